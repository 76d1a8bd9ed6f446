package dev.gmem.fault;

import dev.gmem.snapshot.PageKind;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Background population for a {@link FaultEngine}, on its own thread: the provider's access order
 * first, then every data page by address; zero pages, holes and removed pages are skipped. Batches
 * start at {@code minBatch} after a fault and double up to {@code maxBatch} while no fault comes,
 * so that a busy guest's faults do not queue behind a large batch. Memory gmem owns is filled with
 * write() (then mapped with UFFDIO_CONTINUE in MINOR mode); a foreign target with UFFDIO_COPY.
 * Every page goes through the target's populate-once claims, so pages the fault path filled are
 * skipped. It never holds the engine's lock while it fetches; it holds it while it fills each piece
 * (at most {@link #PIECE} bytes), so that no removal is read between its check and its fill.
 */
final class Prefetcher implements Runnable {
    private final FaultEngine engine;
    private final FaultTarget target;
    private final PageProvider provider;
    private final FaultEngine.Prefetch batches;
    private final Delivery delivery = new Delivery();
    private long current = -1;

    Prefetcher(FaultEngine engine, FaultTarget target, PageProvider provider, FaultEngine.Prefetch batches) {
        this.engine = engine;
        this.target = target;
        this.provider = provider;
        this.batches = batches;
    }

    @Override
    public void run() {
        engine.prefetchStarted();
        try {
            PushSink sink = new PushSink();
            if (provider.push(sink)) { // pages pushed by the provider: this thread waits for the push's end
                if (sink.await()) engine.prefetchDone();
                return;
            }
        } catch (Throwable t) {
            engine.fail("receiving pushed pages", current, t);
            return;
        }
        try (PageProvider.Fetcher fetcher = provider.fetcher()) {
            for (long offset : provider.accessOrder()) {
                if (engine.stopping()) return;
                if (offset >= 0 && offset < target.size() && provider.kind(offset) == PageKind.DATA)
                    fill(fetcher, offset, 1);
            }
            long batch = batches.minBatch();
            long lastBatch = System.nanoTime();
            long offset = provider.nextData(0);
            while (offset >= 0 && offset < target.size() && !engine.stopping()) {
                long page = target.pageSize(offset);
                int n = provider.dataRun(offset, (int)
                        Math.max(1, Math.min(batch / page, (target.regionEnd(offset) - offset) / page)));
                fill(fetcher, offset, n);
                offset = provider.nextData(offset + n * page);
                long now = System.nanoTime();
                batch = engine.lastFaultNanos() > lastBatch
                        ? batches.minBatch()
                        : Math.min(batches.maxBatch(), batch * 2);
                lastBatch = now;
            }
            if (!engine.stopping()) engine.prefetchDone();
        } catch (Throwable t) {
            engine.fail("prefetching", current, t);
        }
    }

    /** Fetches {@code pages} data pages from {@code offset} and fills them, waiting for a delivery that arrives on another thread. */
    private void fill(PageProvider.Fetcher fetcher, long offset, int pages) throws IOException {
        current = offset;
        delivery.begin();
        fetcher.fetch(offset, pages, 0, delivery);
        delivery.await(engine);
    }

    /** A pushing provider's way in: its pages are installed as this thread's own fetches would be. */
    private final class PushSink implements PageProvider.PushSink {
        private boolean ended;
        private IOException failure;

        @Override
        public void offer(long offset, MemorySegment bytes) throws IOException {
            if (engine.stopping()) return;
            current = offset;
            install(offset, bytes);
        }

        @Override
        public synchronized void done() {
            ended = true;
            notifyAll();
        }

        @Override
        public synchronized void failed(IOException cause) {
            if (ended) return;
            failure = cause;
            ended = true;
            notifyAll();
        }

        @Override
        public boolean stopping() {
            return engine.stopping();
        }

        /** Waits for the push's end: true when every page came, false when the engine stopped first. */
        synchronized boolean await() throws IOException {
            while (!ended && !engine.stopping()) {
                try {
                    wait(100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("waiting for pushed pages interrupted");
                }
            }
            if (failure != null) throw failure;
            return ended && !engine.stopping();
        }
    }

    private final class Delivery implements PageProvider.Delivery {
        private boolean delivered;
        private IOException error;

        synchronized void begin() {
            delivered = false;
            error = null;
        }

        synchronized void await(FaultEngine engine) throws IOException {
            while (!delivered && !engine.stopping()) {
                try {
                    wait(100);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new java.io.InterruptedIOException("prefetch interrupted");
                }
            }
            if (error != null) throw error;
        }

        @Override
        public void deliver(long token, long offset, MemorySegment bytes) {
            IOException e = null;
            try {
                install(offset, bytes);
            } catch (IOException x) {
                e = x;
            } catch (Throwable t) {
                e = new IOException(t.toString(), t); // never leave the prefetcher waiting for a delivery that failed
            }
            done(e);
        }

        @Override
        public void failed(long token, long offset, IOException cause) {
            done(cause);
        }

        private synchronized void done(IOException e) {
            error = e;
            delivered = true;
            notifyAll();
        }
    }

    /**
     * Fills the pages of {@code bytes} at {@code offset} that were not removed, in pieces of at
     * most {@link #PIECE} bytes. Each piece is checked against the removed bits and filled under
     * the engine's lock, so no REMOVE is read between the check and the fill (a write() into the
     * file is not held back by a pending removal as a COPY is).
     */
    private void install(long offset, MemorySegment bytes) throws IOException {
        long page = target.pageSize(offset);
        long pagesPerPiece = Math.max(1, PIECE / page);
        long n = bytes.byteSize() / page;
        long p = 0;
        while (p < n && !engine.stopping()) {
            long q = Math.min(n, p + pagesPerPiece);
            ReentrantLock lock = engine.resolving();
            lock.lock();
            try {
                p = fillPiece(offset, bytes, p, q, page);
            } finally {
                lock.unlock();
            }
            // stopped short of q: a removal is pending, which the fault thread reads once the lock is free;
            // the rest of the piece is filled after that, checked against the removed bits again
            if (p < q) java.util.concurrent.locks.LockSupport.parkNanos(RETRY_PAUSE_NANOS);
        }
    }

    /** How long the prefetcher leaves the lock to the fault thread when a removal is pending. */
    private static final long RETRY_PAUSE_NANOS = 20_000;

    /** The largest piece filled under the lock: about 100 us of copying, all a fault may wait behind. */
    static final long PIECE = 256 << 10;

    /**
     * Fills pages {@code [p, q)} of {@code bytes}, skipping removed ones; the engine's lock is held.
     * Returns where it stopped: {@code q}, or the first page not filled when a removal is pending.
     */
    private long fillPiece(long offset, MemorySegment bytes, long p, long q, long page) throws IOException {
        while (p < q) {
            if (engine.removed.get((offset + p * page) / engine.unit)) {
                p++;
                continue;
            }
            long e = p;
            while (e < q && !engine.removed.get((offset + e * page) / engine.unit)) e++;
            long at = offset + p * page;
            MemorySegment run = bytes.asSlice(p * page, (e - p) * page);
            if (target.writable()) {
                engine.writeSome(at, run, page, engine.stats.prefetchPages);
                if (engine.mode() == UffdMode.MINOR) mapWritten(at, run.byteSize(), page);
            } else {
                long done = copySome(at, run, page);
                if (done < run.byteSize()) return p + done / page; // a removal is pending: the caller retries from here
            }
            p = e;
        }
        return q;
    }

    /**
     * UFFDIO_COPY of a run, page by page past pages already populated. Returns the bytes done: all
     * of the run, or less on EAGAIN (a removal is pending: the fault thread must read it, which
     * needs the lock this thread holds, so the caller lets go of it and retries the rest; never
     * skipped, or a graduation would leave data pages to the kernel's zeros).
     */
    private long copySome(long offset, MemorySegment run, long page) throws IOException {
        long at = 0;
        while (at < run.byteSize() && !engine.stopping()) {
            long r = target.copy(offset + at, run.asSlice(at));
            if (r > 0) {
                at += r;
                engine.stats.prefetchPages.addAndGet(r / page);
            } else if (r == Userfaultfd.RETRY) {
                engine.stats.retries.incrementAndGet();
                return at;
            } else {
                at += page; // EXISTS: populated by a fault
            }
        }
        return at;
    }

    /** UFFDIO_CONTINUE over what was written, page by page past pages already mapped. */
    private void mapWritten(long offset, long length, long page) throws IOException {
        long at = 0;
        while (at < length && target.registered() && !engine.stopping()) {
            long r = target.continueAt(offset + at, length - at);
            if (r > 0) {
                at += r;
            } else if (r == Userfaultfd.RETRY) {
                return; // a removal is pending; what is left unmapped faults MINOR and is mapped then
            } else {
                at += page; // EXISTS: mapped by a fault; NO_PAGE: written by neither yet (a fault will)
            }
        }
    }
}
