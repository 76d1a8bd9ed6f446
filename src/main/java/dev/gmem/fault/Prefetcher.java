package dev.gmem.fault;

import dev.gmem.snapshot.PageKind;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.locks.LockSupport;

/**
 * Background population for a {@link FaultEngine}, on its own thread: the provider's access order
 * first, then every data page by address; zero pages, holes and removed pages are skipped. Batches
 * start at {@code minBatch} after a fault and double up to {@code maxBatch} while no fault comes,
 * so that a busy guest's faults do not queue behind a large batch. Memory gmem owns is filled with
 * write() (then mapped with UFFDIO_CONTINUE in MINOR mode); a foreign target with UFFDIO_COPY.
 * Every page goes through the target's populate-once claims, so pages the fault path filled are
 * skipped. It holds no lock of the engine's while it fetches or fills.
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
        try (PageProvider.Fetcher fetcher = provider.fetcher()) {
            for (long offset : provider.accessOrder()) {
                if (engine.stopping()) return;
                if (offset >= 0 && offset < target.size() && provider.kind(offset) == PageKind.DATA) fill(fetcher, offset, 1);
            }
            long batch = batches.minBatch();
            long lastBatch = System.nanoTime();
            long offset = provider.nextData(0);
            while (offset >= 0 && offset < target.size() && !engine.stopping()) {
                long page = target.pageSize(offset);
                int n = provider.dataRun(offset, (int) Math.max(1, Math.min(batch / page, (target.regionEnd(offset) - offset) / page)));
                fill(fetcher, offset, n);
                offset = provider.nextData(offset + n * page);
                long now = System.nanoTime();
                batch = engine.lastFaultNanos() > lastBatch ? batches.minBatch() : Math.min(batches.maxBatch(), batch * 2);
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

    /** Fills the pages of {@code bytes} at {@code offset} that were not removed, run by run. */
    private void install(long offset, MemorySegment bytes) throws IOException {
        long page = target.pageSize(offset);
        long n = bytes.byteSize() / page;
        long p = 0;
        while (p < n) {
            if (engine.removed.get((offset + p * page) / engine.unit)) {
                p++;
                continue;
            }
            long q = p;
            while (q < n && !engine.removed.get((offset + q * page) / engine.unit)) q++;
            long at = offset + p * page;
            MemorySegment run = bytes.asSlice(p * page, (q - p) * page);
            if (target.writable()) {
                engine.writeSome(at, run, page, engine.stats.prefetchPages);
                if (engine.mode() == UffdMode.MINOR) mapWritten(at, run.byteSize(), page);
            } else {
                copySome(at, run, page);
            }
            p = q;
        }
    }

    /** UFFDIO_COPY of a run, page by page past pages already populated, pausing while a removal is pending. */
    private void copySome(long offset, MemorySegment run, long page) throws IOException {
        long at = 0;
        while (at < run.byteSize() && !engine.stopping()) {
            long r = target.copy(offset + at, run.asSlice(at));
            if (r > 0) {
                at += r;
                engine.stats.prefetchPages.addAndGet(r / page);
            } else if (r == Userfaultfd.RETRY) {
                engine.stats.retries.incrementAndGet();
                LockSupport.parkNanos(20_000); // the fault thread reads the pending removal
            } else {
                at += page; // EXISTS: populated by a fault
            }
        }
    }

    /** UFFDIO_CONTINUE over what was written, page by page past pages already mapped. */
    private void mapWritten(long offset, long length, long page) throws IOException {
        long at = 0;
        while (at < length && target.registered() && !engine.stopping()) {
            long r = target.continueAt(offset + at, length - at);
            if (r > 0) {
                at += r;
            } else if (r == Userfaultfd.RETRY) {
                LockSupport.parkNanos(20_000);
            } else {
                at += page; // EXISTS: mapped by a fault; NO_PAGE: written by neither yet (a fault will)
            }
        }
    }
}
