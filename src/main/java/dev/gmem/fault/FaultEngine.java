package dev.gmem.fault;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.PageBitmap;
import dev.gmem.snapshot.PageKind;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdMessages;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The fault engine: serves the userfaultfd of a {@link FaultTarget} from a {@link PageProvider},
 * with an optional {@link Prefetcher} that populates every data page in the background.
 *
 * <h2>Threads</h2>
 * <ul>
 *   <li><b>gmem-uffd</b> (the fault thread) polls the userfaultfd and an eventfd that stops it,
 *       reads events in batches, and serves page faults in the order read. It alone reads the
 *       userfaultfd.
 *   <li><b>gmem-prefetch</b> (optional) populates data pages: the provider's access order first,
 *       then by address, zero pages and holes skipped, in batches of 64 KiB after a fault doubling
 *       to 4 MiB while no fault comes. With write() on memory gmem owns (then UFFDIO_CONTINUE in
 *       MINOR mode), with UFFDIO_COPY on a foreign target.
 *   <li>A provider's own threads may deliver fetched pages; the delivery then resolves the fault
 *       on that thread.
 * </ul>
 *
 * <h2>How a fault is served</h2>
 * A MINOR fault (the file holds the page) is answered with UFFDIO_CONTINUE. A MISSING fault on a
 * zero page, a hole, or a removed page under {@link OnRemove#ZERO} gets zeros. A MISSING fault on a
 * data page fetches it with up to {@code faultAroundPages} following data pages (never past a
 * removed page), then installs them: UFFDIO_COPY in MISSING mode, write() then UFFDIO_CONTINUE in
 * MINOR mode. EEXIST (another path was first) and a CONTINUE over a page not yet written are
 * answered with a wake: the thread faults again if it must. EAGAIN means a removal is pending: the
 * fault thread reads every pending event, then serves the fault again from the start.
 *
 * <h2>Invariants</h2>
 * <ul>
 *   <li><b>Populate once.</b> Every path fills a page through the target's claims, so each data
 *       page is populated by exactly one path; the counters in {@link FaultStats} add up.
 *   <li><b>The {@code resolving} lock</b> (fair) is held while events are read, while a fault's
 *       pages are installed, while the prefetcher fills a piece (at most 256 KiB), and while the
 *       range is unregistered; never while pages are fetched, never across I/O of the provider.
 *       So no fault is half installed when the range is unregistered (a faulting thread retrying
 *       without userfaultfd would otherwise read zeros where a page was about to arrive), and
 *       every check of the removed bits and the installation after it happen with no REMOVE read
 *       in between. Nobody waits for a removal to be read while holding it: the fault thread
 *       drains events itself; other threads release it, pause, and retry.
 *   <li><b>Removals before faults.</b> A REMOVE event is applied (its pages marked removed) in the
 *       same locked step that reads it, before any fault read with it or after it is served, and
 *       every installation checks the removed bits under the lock. An installation before the read
 *       is erased by the discard that follows it (a COPY meanwhile gets EAGAIN); one after sees the
 *       bits. So a removed page never gets old contents under {@link OnRemove#ZERO}. Removed bits
 *       are never cleared: a page removed once is zero (or refetched) on every later fault.
 *   <li><b>A MISSING fault on a foreign target proves its page absent</b>: the target's claim on it
 *       is dropped before it is resolved, so a stale claim (a discard the engine did not hear of)
 *       can never turn a fault into an endless wake.
 *   <li><b>ENOENT after unregistering.</b> Once the target is unregistered, a resolution of a fault
 *       read just before gets ENOENT; the engine wakes the thread (which then retries without
 *       userfaultfd) and counts the fault as served, with no pages. ENOENT while registered is an error.
 *   <li><b>Failure.</b> Any other error stops the engine: it is recorded once (the first),
 *       {@link #awaitPopulated} and {@link #checkHealthy} throw it, both threads stop, and under
 *       {@link OnFailure#RELEASE} the range is unregistered and every thread woken (they then see
 *       the failure, not a hang); under {@link OnFailure#HOLD} it stays registered for the caller
 *       to act on. A data page is never filled with zeros because its data could not be had.
 *   <li><b>Graduation of another process's memory.</b> A foreign target is unregistered only by
 *       {@link #graduate}, asked for once every data page is in place and the engine is healthy,
 *       under the resolving lock: never on a failure (the sender then stays frozen, for the
 *       caller's policy, rather than reading zeros where data belongs), never on close.
 * </ul>
 *
 * <p>{@link #close} stops both threads, then closes the target (which, for memory gmem owns,
 * unregisters, wakes every waiter and unmaps), and never throws.
 */
public final class FaultEngine implements AutoCloseable {
    private static final int MESSAGES = 64;

    /**
     * Fault injection, for the tests of crash recovery only: with {@code
     * GMEM_INJECT_FAULT=die-after-reading-a-removal} in its environment, a journaled engine halts
     * the process right after a read that took a REMOVE, before recording it: the instant a kill
     * is least likely to hit, made certain.
     */
    private static final boolean DIE_AFTER_READING_A_REMOVAL =
            "die-after-reading-a-removal".equals(System.getenv("GMEM_INJECT_FAULT"));
    /** Returned by a resolution whose fetch completes later, on a provider's thread. */
    static final long PENDING = Long.MIN_VALUE;

    /**
     * @param faultAroundPages data pages after the faulting one that a fault also fills (0: the page alone)
     * @param prefetch background population, or null for none
     * @param dataFaults hears the offset of every data page a MISSING fault brings in (the faulting
     *     page and its fault-around), on the fault thread, before they are installed; or null. It
     *     must be quick: the fault waits for it.
     */
    public record Options(
            OnRemove onRemove,
            int faultAroundPages,
            OnFailure onFailure,
            Prefetch prefetch,
            java.util.function.LongConsumer dataFaults,
            Journal journal) {
        public Options {
            if (onRemove == null || onFailure == null)
                throw new IllegalArgumentException("the removal and failure policies must be given");
            if (faultAroundPages < 0) throw new IllegalArgumentException("fault-around must not be negative");
        }

        public Options(OnRemove onRemove, int faultAroundPages, OnFailure onFailure, Prefetch prefetch) {
            this(onRemove, faultAroundPages, onFailure, prefetch, null, null);
        }

        public Options(
                OnRemove onRemove,
                int faultAroundPages,
                OnFailure onFailure,
                Prefetch prefetch,
                java.util.function.LongConsumer dataFaults) {
            this(onRemove, faultAroundPages, onFailure, prefetch, dataFaults, null);
        }

        public Options withJournal(Journal j) {
            return new Options(onRemove, faultAroundPages, onFailure, prefetch, dataFaults, j);
        }

        /** For a local restore: removed pages read as zeros, 3 pages of fault-around, release on failure, prefetch on. */
        public static Options local() {
            return new Options(OnRemove.ZERO, 3, OnFailure.RELEASE, Prefetch.DEFAULT);
        }

        public Options withPrefetch(Prefetch p) {
            return new Options(onRemove, faultAroundPages, onFailure, p, dataFaults, journal);
        }
    }

    /**
     * Where removals are kept beyond this process, so that another one serving the same VM after it
     * died keeps them reading zeros ({@code gmem fc-handler --state-dir}). Called on the fault
     * thread, under the resolving lock, right after the REMOVE event is read and before any later
     * fault is served; a failure to record stops the engine (it never serves on unrecorded).
     */
    public interface Journal {
        void removed(long start, long end) throws IOException;

        /**
         * Where the fault thread reads its events: {@code bytes} of memory that outlives this
         * process (a shared mapping of a file), the journal's own, valid until it is closed, which
         * is after the engine. The kernel copies each event there within the read itself, before
         * the read returns, so a process that dies at any instant after a read leaves every event
         * that read took: the next one applies the removals among them again, which is harmless,
         * since a range once removed reads zeros for good. The engine clears the buffer before
         * each read.
         */
        MemorySegment events(long bytes) throws IOException;
    }

    /** Background population in batches from {@code minBatch} (right after a fault) doubling to {@code maxBatch} bytes. */
    public record Prefetch(long minBatch, long maxBatch) {
        public static final Prefetch DEFAULT = new Prefetch(64 << 10, 4 << 20);

        public Prefetch {
            if (minBatch <= 0 || maxBatch < minBatch)
                throw new IllegalArgumentException(
                        "prefetch batches must be positive and the largest at least the smallest");
        }
    }

    private final FaultTarget target;
    private final PageProvider provider;
    private final Options options;
    private final UffdMode mode;
    private final Userfaultfd uffd;
    /** The bitmaps' unit: the system page (4 KiB). */
    final long unit = Posix.pageSize();
    /** Pages removed by UFFD_EVENT_REMOVE, in units; set by the fault thread, never cleared. */
    final PageBitmap removed;

    final FaultStats stats = new FaultStats();
    /** Fair, so that the fault thread never waits behind a run of the prefetcher's pieces. */
    private final ReentrantLock resolving = new ReentrantLock(true);

    private final Fd stop;
    private final CountDownLatch done = new CountDownLatch(1);
    private final Thread faultThread;
    /** Guarded by this: set at the start, or later by {@link #startPrefetch}. */
    private Thread prefetchThread;

    private final FaultDelivery faultDelivery = new FaultDelivery();
    private final long startNanos = System.nanoTime();
    private volatile boolean stopping;
    private volatile boolean closed;
    private volatile long lastFaultNanos;
    private volatile long prefetchStartNanos = -1;
    private volatile long populatedNanos = -1;
    private volatile FaultEngineFailedException failure;
    // owned by the fault thread
    private MemorySegment messages;
    private final Faults queue = new Faults();
    private long serving = -1;

    private FaultEngine(FaultTarget target, PageProvider provider, Options options, Fd stop) {
        this.target = target;
        this.provider = provider;
        this.options = options;
        this.mode = target.mode();
        this.uffd = target.userfaultfd();
        this.stop = stop;
        this.removed = new PageBitmap((target.size() + unit - 1) / unit);
        this.faultThread = Thread.ofPlatform().name("gmem-uffd").daemon().unstarted(this::serve);
        this.prefetchThread = options.prefetch() == null ? null : prefetcher(options.prefetch());
    }

    private Thread prefetcher(Prefetch batches) {
        return Thread.ofPlatform()
                .name("gmem-prefetch")
                .daemon()
                .unstarted(new Prefetcher(this, target, provider, batches));
    }

    /**
     * Starts serving {@code target}'s faults from {@code provider}. The target stays the caller's
     * until this returns; from then on the engine closes it.
     *
     * @throws TargetMismatchException if the target covers offsets the provider does not have, or their page sizes differ
     * @throws IllegalArgumentException for {@link OnFailure#RELEASE} on memory gmem does not own
     */
    public static FaultEngine start(FaultTarget target, PageProvider provider, Options options) throws IOException {
        return start(target, provider, options, List.of());
    }

    /**
     * As {@link #start(FaultTarget, PageProvider, Options)}, with ranges of host addresses ({start,
     * end} pairs) that were removed before: they read as zeros from the first fault on, as if this
     * engine had read their REMOVE events itself (a VM taken over from a handler that died).
     */
    public static FaultEngine start(
            FaultTarget target, PageProvider provider, Options options, List<long[]> removedBefore) throws IOException {
        if (target.size() > provider.size()) {
            throw new TargetMismatchException("the target covers " + target.size() + " bytes; " + provider.describe()
                    + " has " + provider.size());
        }
        if (target instanceof ForeignTarget f) {
            if (options.onFailure() == OnFailure.RELEASE) {
                throw new IllegalArgumentException(
                        "memory in another process is never unregistered by gmem: use OnFailure.HOLD");
            }
            for (ForeignRegion r : f.regions()) {
                for (long at : new long[] {r.sourceOffset(), r.sourceEnd() - 1}) {
                    if (provider.pageSize(at) != r.pageSize()) {
                        throw new TargetMismatchException(
                                "region " + r + " has " + r.pageSize() + "-byte pages; " + provider.describe() + " has "
                                        + provider.pageSize(at) + "-byte pages at offset " + at);
                    }
                }
            }
        }
        Fd stop = Fd.eventfd(0, Linux.EFD_CLOEXEC | Linux.EFD_NONBLOCK);
        FaultEngine e = new FaultEngine(target, provider, options, stop);
        for (long[] r : removedBefore) e.removed(r[0], r[1]);
        e.faultThread.start();
        synchronized (e) {
            if (e.prefetchThread != null) e.prefetchThread.start();
        }
        return e;
    }

    /**
     * Starts the background population now, with {@code batches}, if the engine has none (it was
     * started without one: a VM served on demand that must now be filled, to graduate before its
     * handler stops). Does nothing if it has one, or once the engine is stopping.
     */
    public synchronized void startPrefetch(Prefetch batches) {
        if (prefetchThread != null || stopping || closed) return;
        prefetchThread = prefetcher(batches);
        prefetchThread.start();
    }

    public FaultTarget target() {
        return target;
    }

    public FaultStats stats() {
        return stats;
    }

    /** System.nanoTime() when the engine started. */
    public long startNanos() {
        return startNanos;
    }

    /** When the prefetcher started, or -1. */
    public long prefetchStartNanos() {
        return prefetchStartNanos;
    }

    /** When every data page was in place, or -1. */
    public long populatedNanos() {
        return populatedNanos;
    }

    /** The failure that stopped the engine, or null. */
    public FaultEngineFailedException failure() {
        return failure;
    }

    /** Throws the failure that stopped the engine, if one did: for threads that read the target's memory, after each read. */
    public void checkHealthy() throws FaultEngineFailedException {
        FaultEngineFailedException f = failure;
        if (f != null) throw f;
    }

    /**
     * Waits until every data page is in place (for memory gmem owns: and the range unregistered),
     * or {@code timeoutMillis} pass. Returns false on time-out. Without a prefetcher, only a failure
     * ends the wait early.
     *
     * @throws FaultEngineFailedException if the engine stopped on an error
     */
    public boolean awaitPopulated(long timeoutMillis) throws IOException {
        boolean ok;
        try {
            ok = done.await(timeoutMillis, TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while waiting for the fault engine");
        }
        checkHealthy();
        return ok;
    }

    /**
     * Graduates a foreign target once every data page is in place: unregisters its regions from the
     * sender's userfaultfd (under the resolving lock, so no resolution is half done), so that the
     * other process no longer depends on this one. A fault read before that and served after it
     * meets ENOENT and is answered with a wake; the kernel serves the thread, with zeros, since only
     * zero pages, holes and removed ranges can still be missing. Close the engine afterwards.
     *
     * @throws IllegalStateException for an owned target (its memory is gmem's own, released by
     *     close), or before every data page is in place
     * @throws FaultEngineFailedException if the engine had failed: a frozen sender is reported, not graduated
     */
    public void graduate() throws IOException {
        if (!(target instanceof ForeignTarget foreign))
            throw new IllegalStateException("only memory of another process graduates");
        checkHealthy();
        if (populatedNanos() <= 0)
            throw new IllegalStateException("not every data page is in place: nothing graduates before that");
        resolving.lock();
        try {
            foreign.graduate();
        } finally {
            resolving.unlock();
        }
    }

    // ---- the fault thread ----

    private void serve() {
        try (Arena arena = Arena.ofConfined();
                PageProvider.Fetcher fetcher = provider.fetcher()) {
            Journal journal = options.journal();
            messages = journal == null
                    ? arena.allocate(UffdAbi.MSG, MESSAGES)
                    : journal.events(UffdAbi.MSG.byteSize() * MESSAGES);
            Poller poller = new Poller(Linux.POLLIN, uffd.fd(), stop);
            while (!stopping) {
                poller.poll(-1);
                if (poller.ready(1) != 0 || stopping) break;
                drain();
                while (!stopping && queue.next()) serveFault(queue.flags, queue.address, fetcher);
            }
        } catch (Throwable t) {
            fail("serving faults", serving, t);
        }
    }

    /**
     * Reads every pending event, under the lock: removals are applied at once, faults queued.
     * Reading a REMOVE lets its madvise go on to discard the pages, so the read and the marking
     * must not fall between another thread's check of the removed bits and its installation.
     */
    private void drain() throws IOException {
        resolving.lock();
        long faultsRead = 0;
        Journal journal = options.journal();
        try {
            while (true) {
                // journaled, the buffer outlives this process and the kernel fills it within the read: a death from
                // the read's return on (which may wait out a safepoint) to the recording leaves what it read there.
                // Cleared first, by this thread: its pages are then present and writable, so the kernel's copy
                // cannot fault, and only this read's events are left in it
                if (journal != null) messages.fill((byte) 0);
                int n = uffd.read(messages);
                if (DIE_AFTER_READING_A_REMOVAL && journal != null) dieIfRemoval(n);
                for (int i = 0; i < n; i++) {
                    switch (UffdMessages.event(messages, i)) {
                        case UffdAbi.EVENT_PAGEFAULT -> {
                            queue.add(UffdMessages.faultFlags(messages, i), UffdMessages.faultAddress(messages, i));
                            faultsRead++;
                        }
                        case UffdAbi.EVENT_REMOVE -> {
                            long start = UffdMessages.removeStart(messages, i),
                                    end = UffdMessages.removeEnd(messages, i);
                            if (journal != null) journal.removed(start, end);
                            removed(start, end);
                        }
                        default -> {} // not requested (ForeignTarget refuses senders that asked for FORK, REMAP or
                        // UNMAP)
                    }
                }
                if (n < MESSAGES) break;
            }
        } finally {
            resolving.unlock();
        }
        stats.firstRead(faultsRead);
    }

    private void dieIfRemoval(int n) {
        for (int i = 0; i < n; i++)
            if (UffdMessages.event(messages, i) == UffdAbi.EVENT_REMOVE) {
                System.err.println("gmem: GMEM_INJECT_FAULT: halting after reading a removal, before recording it");
                Runtime.getRuntime().halt(137);
            }
    }

    private void removed(long start, long end) {
        stats.removes.incrementAndGet();
        long first = target.offsetOf(start);
        long last = target.offsetOf(end - 1);
        if (first >= 0 && last - first == end - 1 - start) {
            removed.setRange(first / unit, last / unit + 1);
            return;
        }
        for (long a = start; a < end; a += unit) { // the range crosses regions, or leaves the target
            long o = target.offsetOf(a);
            if (o >= 0) removed.set(o / unit);
        }
    }

    private void serveFault(long flags, long address, PageProvider.Fetcher fetcher) throws IOException {
        long t0 = System.nanoTime();
        lastFaultNanos = t0;
        long offset = target.offsetOf(address);
        if (offset < 0)
            throw new TargetMismatchException(
                    "a fault at address 0x" + Long.toHexString(address) + " lies outside every region of the target");
        long page = target.pageSize(offset);
        offset -= offset % page;
        serving = offset;
        boolean minor = (flags & UffdAbi.PAGEFAULT_FLAG_MINOR) != 0;
        while (true) {
            long r;
            try {
                r = minor ? resolveMinor(offset, page) : resolveMissing(offset, page, fetcher, t0);
            } catch (SyscallException e) {
                if (!e.is(Errno.ENOENT) || target.registered()) throw e;
                target.wake(offset, page); // unregistered meanwhile: the thread retries without userfaultfd
                break;
            }
            if (r == PENDING) return; // its delivery records it
            if (r != Userfaultfd.RETRY) break;
            stats.retries.incrementAndGet();
            drain();
        }
        stats.faultServed(System.nanoTime() - t0);
        serving = -1;
    }

    /** A MINOR fault: the file holds the page; map it. */
    private long resolveMinor(long offset, long page) throws IOException {
        resolving.lock();
        try {
            long r = target.continueAt(offset, page);
            if (r > 0) {
                stats.continues.incrementAndGet();
            } else if (r == Userfaultfd.EXISTS || r == Userfaultfd.NO_PAGE) {
                lostRace(offset, page); // mapped by a racing CONTINUE, or removed since: it faults again if it must
            }
            return r;
        } finally {
            resolving.unlock();
        }
    }

    /** A MISSING fault: the target does not hold the page. */
    private long resolveMissing(long offset, long page, PageProvider.Fetcher fetcher, long token) throws IOException {
        boolean gone = removed.get(offset / unit);
        if (provider.kind(offset) != PageKind.DATA || (gone && options.onRemove() == OnRemove.ZERO))
            return zeroFault(offset, page, gone);
        int n = provider.dataRun(
                offset, (int) Math.min(1 + options.faultAroundPages(), (target.regionEnd(offset) - offset) / page));
        for (int i = 1; i < n; i++) {
            if (removed.get((offset + i * page) / unit)) {
                n = i;
                break;
            }
        }
        if (gone) target.forget(offset, n * page);
        if (options.dataFaults() != null) {
            for (int i = 0; i < n; i++) options.dataFaults().accept(offset + i * page);
        }
        faultDelivery.syncResult = PENDING;
        try {
            fetcher.fetch(offset, n, token, faultDelivery);
        } catch (DeliveryFailed d) {
            throw d.cause();
        }
        long r = faultDelivery.syncResult;
        faultDelivery.syncResult = PENDING;
        return r;
    }

    private long zeroFault(long offset, long page, boolean gone) throws IOException {
        resolving.lock();
        try {
            if (!target.writable()) target.forget(offset, page); // a MISSING fault proves the foreign page absent
            long r = target.zero(offset, page);
            if (r == Userfaultfd.EXISTS && gone) {
                target.forget(offset, page); // still counted as populated from before the removal
                r = target.zero(offset, page);
            }
            if (r > 0) stats.zeroPages.addAndGet(r / page);
            else if (r != Userfaultfd.RETRY) lostRace(offset, page);
            return r;
        } finally {
            resolving.unlock();
        }
    }

    /**
     * Installs fetched pages for a fault, under the lock. Pages removed since the fetch began are
     * not installed under {@link OnRemove#ZERO}: a removed first page is zeroed instead.
     */
    private long installFault(long offset, MemorySegment bytes) throws IOException {
        long page = target.pageSize(offset);
        long length = bytes.byteSize();
        resolving.lock();
        try {
            if (options.onRemove() == OnRemove.ZERO) {
                for (long at = 0; at < length; at += page) {
                    if (removed.get((offset + at) / unit)) {
                        if (at == 0) return zeroFault(offset, page, true);
                        length = at;
                        break;
                    }
                }
            }
            MemorySegment run = length == bytes.byteSize() ? bytes : bytes.asSlice(0, length);
            if (!target.writable()) target.forget(offset, page); // a MISSING fault proves the foreign page absent
            long r;
            if (mode == UffdMode.MISSING) {
                // the faulting page first, alone: its thread is woken by that copy and runs on while the
                // fault-around pages follow in a second one (what those cannot fill, their faults or the prefetch do)
                r = target.copy(offset, run.asSlice(0, Math.min(page, run.byteSize())));
                if (r > 0) stats.faultPages.addAndGet(r / page);
                if (r > 0 && run.byteSize() > page) {
                    long around = target.copy(offset + page, run.asSlice(page));
                    if (around > 0) {
                        stats.faultPages.addAndGet(around / page);
                        stats.faultAroundPages.addAndGet(around / page);
                    }
                }
            } else {
                long before = stats.faultPages.get(); // only this thread, under the lock, adds fault pages
                writeSome(offset, run, page, stats.faultPages);
                stats.faultAroundPages.addAndGet(Math.max(0, stats.faultPages.get() - before - 1));
                r = target.continueAt(offset, length);
                if (r == Userfaultfd.NO_PAGE)
                    r = Userfaultfd.EXISTS; // claimed by a write still in flight: wake; the thread faults again
                if (r > 0) stats.continues.incrementAndGet();
            }
            if (r <= 0 && r != Userfaultfd.RETRY) lostRace(offset, page);
            return r;
        } finally {
            resolving.unlock();
        }
    }

    private void lostRace(long offset, long page) throws SyscallException {
        stats.racesLost.incrementAndGet();
        target.wake(offset, page);
    }

    /** Where the fault path's fetches arrive. */
    private final class FaultDelivery implements PageProvider.Delivery {
        /** The result of a delivery made on the fault thread during its fetch; PENDING otherwise. Fault thread only. */
        long syncResult = PENDING;

        @Override
        public void deliver(long token, long offset, MemorySegment bytes) {
            if (Thread.currentThread() == faultThread) {
                try {
                    syncResult = installFault(offset, bytes);
                } catch (IOException e) {
                    throw new DeliveryFailed(e);
                }
                return;
            }
            // a provider's thread: resolve here, pausing while a removal is pending (the fault thread reads it)
            try {
                long r;
                while ((r = installFault(offset, bytes)) == Userfaultfd.RETRY && !stopping) {
                    stats.retries.incrementAndGet();
                    LockSupport.parkNanos(20_000);
                }
                stats.faultServed(System.nanoTime() - token);
            } catch (SyscallException e) {
                if (!e.is(Errno.ENOENT) || target.registered()) fail("installing fetched pages", offset, e);
            } catch (Throwable t) {
                fail("installing fetched pages", offset, t);
            }
        }

        @Override
        public void failed(long token, long offset, IOException cause) {
            if (Thread.currentThread() == faultThread) throw new DeliveryFailed(cause);
            fail("fetching pages for a fault", offset, cause);
        }
    }

    /** Carries a failure delivered on the fault thread out of the provider's fetch call. */
    private static final class DeliveryFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        DeliveryFailed(IOException cause) {
            super(cause.getMessage(), cause, false, false);
        }

        IOException cause() {
            return (IOException) getCause();
        }
    }

    // ---- shared with the prefetcher ----

    /** Whether {@link #close} was called: the engine serves nothing more. */
    public boolean closed() {
        return closed;
    }

    boolean stopping() {
        return stopping;
    }

    long lastFaultNanos() {
        return lastFaultNanos;
    }

    UffdMode mode() {
        return mode;
    }

    /** The lock installations hold; the prefetcher takes it for each piece it fills. */
    ReentrantLock resolving() {
        return resolving;
    }

    void prefetchStarted() {
        prefetchStartNanos = System.nanoTime();
    }

    /**
     * Writes {@code run} at {@code offset} into the pages not yet populated, skipping those that
     * are (or are being written), crediting the pages written to {@code credit}.
     */
    void writeSome(long offset, MemorySegment run, long page, AtomicLong credit) throws IOException {
        long at = 0;
        while (at < run.byteSize()) {
            long n = target.write(offset + at, run.asSlice(at));
            if (n == 0) {
                at += page; // populated already
            } else {
                at += n;
                credit.addAndGet(n / page);
            }
        }
    }

    /**
     * Every data page is in place. Memory gmem owns is unregistered (under the lock: no fault may
     * be half installed), so that it no longer depends on the engine, unless removed pages must be
     * fetched again on their next fault ({@link OnRemove#REFETCH}). A foreign target keeps being
     * served (its zero pages and holes still fault).
     */
    void prefetchDone() throws SyscallException {
        boolean refetchLater =
                options.onRemove() == OnRemove.REFETCH && removed.nextSet(0, removed.pages()) < removed.pages();
        if (target.writable() && !refetchLater) {
            resolving.lock();
            try {
                if (!stopping) target.unregister();
            } finally {
                resolving.unlock();
            }
        }
        populatedNanos = System.nanoTime();
        done.countDown();
    }

    /** Records the first fatal error and stops; see the class notes. Never throws. */
    void fail(String where, long offset, Throwable t) {
        Throwable cause = t instanceof DeliveryFailed d ? d.getCause() : t;
        FaultEngineFailedException f;
        synchronized (this) {
            if (failure != null || closed) return;
            f = new FaultEngineFailedException(where, offset, cause);
            failure = f;
        }
        stopping = true;
        signalStop();
        if (options.onFailure() == OnFailure.RELEASE && target.writable()) {
            resolving.lock();
            try {
                target.unregister();
            } catch (Throwable e) {
                f.addSuppressed(e);
            } finally {
                resolving.unlock();
            }
        }
        done.countDown();
    }

    private void signalStop() {
        try {
            stop.eventfdAdd(1);
        } catch (SyscallException | IllegalStateException ignored) {
            // the counter is already non-zero (the fault thread is waking anyway), or closed
        }
    }

    /**
     * Stops both threads, then closes the target: for memory gmem owns, it unregisters (if still
     * registered), wakes every waiter and unmaps once they have left the mapping; pages not yet
     * restored then read as zeros, so discard the memory unless {@link #awaitPopulated} returned
     * true. For a foreign target, only its descriptor is closed. Never throws; idempotent.
     */
    @Override
    public void close() {
        synchronized (this) {
            if (closed) {
                awaitClosed(); // a second caller returns once the first has stopped both threads
                return;
            }
            closed = true;
        }
        stopping = true;
        signalStop();
        if (target.writable()) {
            // release waiting threads first: the engine's threads may take a moment to stop
            resolving.lock();
            try {
                target.unregister();
            } catch (Throwable ignored) {
                // closing the target below unregisters as well
            } finally {
                resolving.unlock();
            }
        }
        join(faultThread);
        Thread prefetch;
        synchronized (this) {
            prefetch = prefetchThread;
        }
        join(prefetch);
        target.close();
        stop.closeQuietly();
        synchronized (this) {
            closeDone = true;
            notifyAll();
        }
    }

    /** Guarded by this: the first {@link #close} has finished. */
    private boolean closeDone;

    private void awaitClosed() {
        boolean interrupted = false;
        while (!closeDone) {
            try {
                wait();
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    private static void join(Thread t) {
        if (t == null) return;
        boolean interrupted = false;
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (t.isAlive() && System.nanoTime() < deadline) {
            try {
                t.join(100);
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    /**
     * Page faults read but not yet served, as {flags, address} pairs in one growing array: the
     * fault path allocates nothing per event. Fault thread only.
     */
    private static final class Faults {
        private long[] queue = new long[2 * MESSAGES];
        private int head;
        private int tail;
        long flags;
        long address;

        void add(long flags, long address) {
            if (head == tail) head = tail = 0;
            if (tail + 2 > queue.length) queue = Arrays.copyOf(queue, 2 * queue.length);
            queue[tail++] = flags;
            queue[tail++] = address;
        }

        boolean next() {
            if (head == tail) return false;
            flags = queue[head++];
            address = queue[head++];
            return true;
        }
    }
}
