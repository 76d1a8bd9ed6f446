package dev.gmem.restore;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.memory.PageBitmap;
import dev.gmem.memory.UffdRegistration;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.ChunkReader;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.UffdMessages;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.HdrHistogram.Histogram;

/**
 * Lazy restore: guest memory usable at once, pages filled on demand through userfaultfd while a
 * background thread populates the rest.
 *
 * <p>On {@link #start}, guest memory (a memfd-backed {@link GuestMemory}) is mapped and registered
 * with userfaultfd, and two named threads start:
 * <ul>
 *   <li><b>gmem-uffd</b> serves faults. It polls the userfaultfd and an eventfd that stops it. A
 *       missing data page is filled from its snapshot chunk, decoding only that chunk and
 *       checking its checksum on first use, together with up to {@code faultAroundPages} data pages
 *       after it. A zero page or a hole gets UFFDIO_ZEROPAGE. In {@link UffdMode#MISSING} data
 *       pages arrive with UFFDIO_COPY. In {@link UffdMode#MINOR} (the kernel work's flow) they are
 *       written into the file with write(), then mapped with UFFDIO_CONTINUE; a page the
 *       prefetcher already wrote costs only the CONTINUE. EEXIST means another path got there
 *       first, and the faulting thread is woken. EAGAIN means pending events (a removal) are
 *       drained first, then the fault is retried. Any other error stops the restore, and
 *       {@link #awaitPopulated} reports it.
 *   <li><b>gmem-prefetch</b> populates every data page with write(): first the pages of the
 *       snapshot's recorded access order, then all chunks by address. Zero pages and holes are
 *       skipped; they cost no copy. Its batches adapt to the guest: 64 KiB right after a fault,
 *       doubling up to 4 MiB while no fault comes. In MINOR mode it maps what it wrote with
 *       UFFDIO_CONTINUE, so that later accesses do not fault. Once every data page is in place the
 *       range is unregistered, and the kernel serves the remaining holes as zeros.
 * </ul>
 * Both paths go through the guest memory's populate-once claims, so they never race into wrong
 * data: a page is populated by exactly one of them.
 *
 * <p>Removals: with EVENT_REMOVE, a range discarded with MADV_REMOVE is served as zeros afterwards
 * ({@link OnRemove#ZERO}) or fetched from the snapshot again ({@link OnRemove#REFETCH}). A
 * MADV_DONTNEED range of this shared mapping keeps its data in the file and is mapped again as it was.
 */
public final class LazyRestore implements AutoCloseable {
    private static final int MESSAGES = 64;
    private static final long HISTOGRAM_MAX_NANOS = TimeUnit.SECONDS.toNanos(60);

    public enum UffdMode {
        MISSING,
        MINOR;

        public String label() {
            return name().toLowerCase(Locale.ROOT);
        }

        public static UffdMode parse(String s) {
            for (UffdMode m : values()) {
                if (m.label().equalsIgnoreCase(s.strip())) return m;
            }
            throw new IllegalArgumentException("unknown userfaultfd mode '" + s + "': use missing or minor");
        }
    }

    /** What a page discarded with MADV_REMOVE reads as afterwards. */
    public enum OnRemove { ZERO, REFETCH }

    /**
     * @param faultAroundPages data pages after the faulting one that a fault also fills (0: the page alone)
     * @param minBatch the prefetch batch right after a fault, in bytes
     * @param maxBatch the largest prefetch batch, reached while the guest is quiet
     */
    public record Options(UffdMode mode, OnRemove onRemove, boolean prefetch, int faultAroundPages, long minBatch, long maxBatch) {
        public static Options defaults(UffdMode mode) {
            return new Options(mode, OnRemove.ZERO, true, 3, 64 << 10, 4 << 20);
        }

        public Options withPrefetch(boolean on) {
            return new Options(mode, onRemove, on, faultAroundPages, minBatch, maxBatch);
        }
    }

    /** Fault service times in microseconds, from reading the event to waking the thread. */
    public record Latency(long count, double p50Us, double p90Us, double p99Us, double maxUs, double meanUs) {}

    /**
     * What happened so far. Pages by path: {@code faultPages} data pages populated by the fault
     * path (COPY, or write() in MINOR mode), {@code zeroPages} by ZEROPAGE, {@code prefetchPages}
     * by the prefetcher; {@code continues} counts faults answered with UFFDIO_CONTINUE (MINOR).
     * Each data page is populated by exactly one path. {@code blockedMs} is the sum of fault service times: a lower bound on
     * the time faulting threads were blocked (it leaves out the kernel's part before the event is read).
     */
    public record Stats(String mode, long faults, long faultPages, long zeroPages, long continues, long prefetchPages, long prefetchBytes, long racesLost, long retries,
            long removes, Latency latency, double blockedMs, double readyMs, Double populatedMs, Double prefetchGibPerS, boolean complete, String failure) {}

    private final PageSource source;
    private final GuestMemory memory;
    private final Options options;
    private final long page;
    private final HostMapping mapping;
    private final UffdRegistration registration;
    private final Userfaultfd uffd;
    private final Fd stop;
    private final PageIndex index;
    private final AtomicLongArray verified;
    private final PageBitmap removed;
    private final Histogram latency = new Histogram(HISTOGRAM_MAX_NANOS, 3);
    private final CountDownLatch done = new CountDownLatch(1);
    /** Held by the fault thread while it resolves a fault, and by the prefetcher while it unregisters. */
    private final java.util.concurrent.locks.ReentrantLock resolving = new java.util.concurrent.locks.ReentrantLock();
    private final long startNanos;
    private final long readyNanos;
    private final AtomicLong faults = new AtomicLong();
    private final AtomicLong faultPages = new AtomicLong();
    private final AtomicLong zeroPages = new AtomicLong();
    private final AtomicLong prefetchPages = new AtomicLong();
    private final AtomicLong racesLost = new AtomicLong();
    private final AtomicLong continues = new AtomicLong();
    private final AtomicLong retries = new AtomicLong();
    private final AtomicLong removes = new AtomicLong();
    private final AtomicLong blockedNanos = new AtomicLong();
    private volatile long lastFaultNanos;
    private volatile long populatedNanos = -1;
    private volatile long prefetchStartNanos = -1;
    private volatile boolean stopping;
    private volatile boolean unregistered;
    private volatile Throwable failure;
    private final Thread faultThread;
    private final Thread prefetchThread;

    private LazyRestore(PageSource source, GuestMemory memory, Options options, HostMapping mapping, UffdRegistration registration, Fd stop,
            long startNanos) {
        this.source = source;
        this.memory = memory;
        this.options = options;
        this.page = memory.pageSize();
        this.mapping = mapping;
        this.registration = registration;
        this.uffd = registration.userfaultfd();
        this.stop = stop;
        this.startNanos = startNanos;
        this.index = new PageIndex(source);
        List<Chunk> chunks = source.chunks();
        this.verified = new AtomicLongArray((chunks.size() + 63) / 64);
        this.removed = new PageBitmap(source.size() / page);
        this.faultThread = Thread.ofPlatform().name("gmem-uffd").daemon().unstarted(this::serveFaults);
        this.prefetchThread = options.prefetch() ? Thread.ofPlatform().name("gmem-prefetch").daemon().unstarted(this::prefetch) : null;
        this.readyNanos = System.nanoTime();
    }

    /**
     * Registers {@code memory} (as large as {@code source}, created with MMAP and INIT_SHARED) with
     * userfaultfd and starts serving faults and prefetching. Guest memory is usable through
     * {@link #memory()} as soon as this returns.
     *
     * @throws dev.gmem.memory.UnsupportedFeatureException where the backend cannot register userfaultfd on this host, with the reason
     */
    public static LazyRestore start(PageSource source, GuestMemory memory, Options options) throws IOException {
        long t0 = System.nanoTime();
        if (memory.size() < source.size()) {
            throw new IOException(source.path() + ": " + source.size() + " bytes of guest memory do not fit in a " + memory.size() + "-byte guest memory file");
        }
        for (Region r : source.regions()) {
            if (r.pageSize() != memory.pageSize()) {
                throw new IOException(source.path() + ": lazy restore serves " + memory.pageSize() + "-byte pages; region at guest 0x"
                        + Long.toHexString(r.guestAddress()) + " has " + r.pageSize() + "-byte pages");
            }
        }
        if (options.minBatch() < memory.pageSize() || options.maxBatch() < options.minBatch() || options.faultAroundPages() < 0) {
            throw new IllegalArgumentException("batches must be at least a page and the largest at least the smallest; fault-around must not be negative");
        }
        long modes = UffdAbi.REGISTER_MODE_MISSING | (options.mode() == UffdMode.MINOR ? UffdAbi.REGISTER_MODE_MINOR : 0);
        HostMapping mapping = memory.map(0, source.size());
        UffdRegistration reg = null;
        Fd stop = null;
        try {
            reg = memory.registerUserfaultfd(mapping, modes, UffdFeature.EVENT_REMOVE.bit());
            stop = Fd.eventfd(0, Linux.EFD_CLOEXEC | Linux.EFD_NONBLOCK);
            LazyRestore r = new LazyRestore(source, memory, options, mapping, reg, stop, t0);
            r.faultThread.start();
            if (r.prefetchThread != null) r.prefetchThread.start();
            return r;
        } catch (Throwable e) {
            if (stop != null) stop.closeQuietly();
            if (reg != null) {
                try {
                    reg.close();
                } catch (SyscallException ignored) {
                    // already failing
                }
            }
            mapping.close();
            throw e;
        }
    }

    /**
     * Guest memory, registered: what the guest (or a VMM's memslot) uses. Accesses fault until
     * their page is in place. Threads of this JVM must touch it only from C (a KVM_RUN, or
     * {@link dev.gmem.linux.Posix#mismatch} and {@link dev.gmem.linux.Posix#copy}): a Java thread
     * blocked on a fault inside Java code holds up every safepoint, and with it the fault thread.
     */
    public MemorySegment memory() {
        return mapping.segment();
    }

    public HostMapping mapping() {
        return mapping;
    }

    public GuestMemory guestMemory() {
        return memory;
    }

    /**
     * Waits until every data page is in place (and the range unregistered), or {@code timeoutMillis}
     * pass. Returns false on time-out.
     *
     * @throws IOException if the restore failed, with the cause
     */
    public boolean awaitPopulated(long timeoutMillis) throws IOException {
        try {
            boolean ok = done.await(timeoutMillis, TimeUnit.MILLISECONDS);
            Throwable f = failure;
            if (f != null) throw new IOException("lazy restore of " + source.path() + " failed: " + f.getMessage(), f);
            return ok;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting for lazy restore", e);
        }
    }

    public Stats stats() {
        Latency l;
        synchronized (latency) {
            l = new Latency(latency.getTotalCount(), us(latency.getValueAtPercentile(50)), us(latency.getValueAtPercentile(90)),
                    us(latency.getValueAtPercentile(99)), us(latency.getMaxValue()), latency.getTotalCount() == 0 ? 0 : latency.getMean() / 1000);
        }
        long populated = populatedNanos;
        long prefetchStart = prefetchStartNanos;
        long bytes = prefetchPages.get() * page;
        Double gibs = populated > 0 && prefetchStart > 0 && populated > prefetchStart ? bytes / (1024.0 * 1024 * 1024) / ((populated - prefetchStart) / 1e9) : null;
        Throwable f = failure;
        return new Stats(options.mode().label(), faults.get(), faultPages.get(), zeroPages.get(), continues.get(), prefetchPages.get(), bytes, racesLost.get(), retries.get(),
                removes.get(), l, blockedNanos.get() / 1e6, (readyNanos - startNanos) / 1e6, populated > 0 ? (populated - startNanos) / 1e6 : null, gibs,
                populated > 0 && f == null, f == null ? null : String.valueOf(f.getMessage()));
    }

    private static double us(long nanos) {
        return Math.round(nanos / 10.0) / 100.0;
    }

    // ---- the fault thread ----

    private void serveFaults() {
        try (Arena arena = Arena.ofConfined(); ChunkReader cache = new ChunkReader(source)) {
            MemorySegment messages = arena.allocate(UffdAbi.MSG, MESSAGES);
            Poller poller = new Poller(Linux.POLLIN, uffd.fd(), stop);
            Events pending = new Events();
            while (!stopping) {
                poller.poll(-1);
                if (poller.ready(1) != 0 || stopping) break;
                pending.add(messages, uffd.read(messages));
                while (pending.next()) handle(pending, messages, cache);
            }
        } catch (Throwable t) {
            fail(t);
        }
    }

    /**
     * Events read but not yet handled, as {event, flags or start, address or end} triples in one
     * growing array: the fault path allocates nothing per event. Owned by the fault thread.
     */
    private static final class Events {
        private long[] queue = new long[3 * MESSAGES];
        private int head;
        private int tail;
        long event;
        long a;
        long b;

        void add(MemorySegment messages, int n) {
            if (head == tail) head = tail = 0;
            if (tail + 3 * n > queue.length) queue = java.util.Arrays.copyOf(queue, Math.max(2 * queue.length, tail + 3 * n));
            for (int i = 0; i < n; i++) {
                int event = UffdMessages.event(messages, i);
                boolean remove = event == UffdAbi.EVENT_REMOVE;
                queue[tail++] = event;
                queue[tail++] = remove ? UffdMessages.removeStart(messages, i) : UffdMessages.faultFlags(messages, i);
                queue[tail++] = remove ? UffdMessages.removeEnd(messages, i) : UffdMessages.faultAddress(messages, i);
            }
        }

        /** Takes the next event into {@link #event}, {@link #a} and {@link #b}; false when none is left. */
        boolean next() {
            if (head == tail) return false;
            event = queue[head++];
            a = queue[head++];
            b = queue[head++];
            return true;
        }
    }

    private void handle(Events e, MemorySegment messages, ChunkReader cache) throws IOException {
        if (e.event == UffdAbi.EVENT_REMOVE) {
            removes.incrementAndGet();
            long from = registration.fileOffsetOf(e.a) / page;
            long to = from + (e.b - e.a + page - 1) / page;
            removed.setRange(from, to);
            return;
        }
        if (e.event != UffdAbi.EVENT_PAGEFAULT) return; // not requested: FORK, REMAP, UNMAP
        long t0 = System.nanoTime();
        lastFaultNanos = t0;
        long offset = registration.fileOffsetOf(e.b & -page);
        boolean minor = (e.a & UffdAbi.PAGEFAULT_FLAG_MINOR) != 0;
        resolving.lock();
        try {
            resolve(offset, minor, e, messages, cache);
        } finally {
            resolving.unlock();
        }
        long dt = System.nanoTime() - t0;
        faults.incrementAndGet();
        blockedNanos.addAndGet(dt);
        synchronized (latency) {
            latency.recordValue(Math.min(dt, HISTOGRAM_MAX_NANOS));
        }
    }

    private void resolve(long offset, boolean minor, Events pending, MemorySegment messages, ChunkReader cache) throws IOException {
        while (true) {
            long r;
            try {
                r = minor ? resolveMinor(offset) : resolveMissing(offset, cache);
            } catch (SyscallException e) {
                // once every data page is in place the range is unregistered, which wakes every
                // waiting thread; a fault read just before that fails with ENOENT and needs nothing
                if (unregistered && e.is(Errno.ENOENT)) {
                    wake(offset);
                    break;
                }
                throw e;
            }
            if (r != Userfaultfd.RETRY) break;
            // the address space is changing (a removal): take the pending events first, then retry
            retries.incrementAndGet();
            pending.add(messages, uffd.read(messages));
        }
    }

    /** A MINOR fault: the file holds the page; map it. */
    private long resolveMinor(long offset) throws IOException {
        long r = registration.continueAt(offset, page);
        if (r == Userfaultfd.RETRY) return r;
        if (r > 0) continues.incrementAndGet();
        if (r == Userfaultfd.EXISTS || r == Userfaultfd.NO_PAGE) {
            // mapped by a racing CONTINUE, or removed since: wake the thread; it faults again if it must
            racesLost.incrementAndGet();
            wake(offset);
        }
        return r;
    }

    /** A MISSING fault: the file does not hold the page. */
    private long resolveMissing(long offset, ChunkReader cache) throws IOException {
        PageIndex.Location at = index.atFileOffset(offset);
        boolean gone = removed.get(offset / page);
        if (at == null || at.kind() != PageKind.DATA || (gone && options.onRemove() == OnRemove.ZERO)) {
            long r = registration.zero(offset, page);
            if (r == Userfaultfd.EXISTS && gone) {
                memory.refreshPopulated(offset, page);
                r = registration.zero(offset, page);
            }
            if (r > 0) zeroPages.addAndGet(r / page);
            else if (r != Userfaultfd.RETRY) lostRace(offset);
            return r;
        }
        verifyOnce(at.index());
        ChunkData data = cache.chunk(at.index());
        int n = 1;
        while (n <= options.faultAroundPages() && at.page() + n < at.chunk().pages() && at.chunk().kind(at.page() + n) == PageKind.DATA
                && !removed.get(offset / page + n)) {
            n++;
        }
        MemorySegment run = data.run(at.page(), n);
        if (gone) memory.refreshPopulated(offset, n * page);
        long r;
        if (options.mode() == UffdMode.MISSING) {
            r = registration.copy(offset, run, run.byteSize());
            if (r > 0) faultPages.addAndGet(r / page);
        } else {
            writeSome(offset, run);
            r = registration.continueAt(offset, run.byteSize());
            if (r == Userfaultfd.NO_PAGE) r = Userfaultfd.EXISTS; // claimed by a write still in flight: wake, and the thread faults again
            if (r > 0) continues.incrementAndGet();
        }
        if (r <= 0 && r != Userfaultfd.RETRY) lostRace(offset);
        return r;
    }

    private void lostRace(long offset) throws SyscallException {
        racesLost.incrementAndGet();
        wake(offset);
    }

    /** UFFDIO_WAKE works on an unregistered range too, and a fault read around the unregistration may need it. */
    private void wake(long offset) throws SyscallException {
        registration.wake(offset, page);
    }

    /** Writes {@code run} at {@code offset} into the pages not yet populated, skipping those that are (or are being written). */
    private void writeSome(long offset, MemorySegment run) throws IOException {
        long done = 0;
        while (done < run.byteSize()) {
            long n;
            try {
                n = memory.write(offset + done, run.asSlice(done));
            } catch (SyscallException e) {
                if (!e.is(Errno.ENOSPC)) throw e;
                n = 0;
            }
            if (n == 0) {
                done += page; // populated already
            } else {
                done += n;
                prefetchOrFault(n);
            }
        }
    }

    private void prefetchOrFault(long bytes) {
        (Thread.currentThread() == prefetchThread ? prefetchPages : faultPages).addAndGet(bytes / page);
    }

    // ---- the prefetch thread ----

    private void prefetch() {
        prefetchStartNanos = System.nanoTime();
        try (ChunkReader cache = new ChunkReader(source)) {
            long batch = options.minBatch();
            long lastBatch = System.nanoTime();
            // first the pages the guest touched first, as recorded in the snapshot
            for (long gpa : source.accessOrder()) {
                if (stopping) return;
                long offset = index.fileOffsetOfGuest(gpa);
                PageIndex.Location at = offset < 0 ? null : index.atFileOffset(offset);
                if (at == null || at.kind() != PageKind.DATA) continue;
                fill(at.index(), at.page(), 1, cache, batch);
            }
            List<Chunk> chunks = source.chunks();
            for (int i = 0; i < chunks.size() && !stopping; i++) {
                Chunk c = chunks.get(i);
                if (c.dataPages() == 0) continue;
                int from = 0;
                while (from < c.pages() && !stopping) {
                    int pages = (int) Math.min(c.pages() - from, batch / page);
                    fill(i, from, pages, cache, batch);
                    from += pages;
                    long now = System.nanoTime();
                    batch = lastFaultNanos > lastBatch ? options.minBatch() : Math.min(options.maxBatch(), batch * 2);
                    lastBatch = now;
                }
            }
            if (stopping) return;
            if (options.onRemove() == OnRemove.REFETCH && removed.nextSet(0, source.size() / page) < source.size() / page) {
                // removed pages are fetched again on their next fault: keep serving faults
                populatedNanos = System.nanoTime();
                done.countDown();
                return;
            }
            // No fault may be half resolved when the range is unregistered: a page this thread
            // skipped because a fault had claimed it must be in place first, or the faulting
            // thread would retry without userfaultfd and get a zero page.
            resolving.lock();
            try {
                unregistered = true;
                registration.unregister();
                // the kernel does not wake faults already read from the queue when a range is
                // unregistered: wake every waiter; each retries its fault without userfaultfd
                registration.wake(0, source.size());
            } finally {
                resolving.unlock();
            }
            populatedNanos = System.nanoTime();
            done.countDown();
        } catch (Throwable t) {
            fail(t);
        }
    }

    /** Populates the data pages among {@code pages} pages of chunk {@code index} from window page {@code from}, skipping removed ones. */
    private void fill(int index, int from, int pages, ChunkReader cache, long batch) throws IOException {
        Chunk c = source.chunks().get(index);
        Region r = source.regions().get(c.region());
        verifyOnce(index);
        ChunkData data = cache.chunk(index);
        long base = r.fileOffset() + c.firstPage() * r.pageSize();
        int end = from + pages;
        int p = from;
        while (p < end) {
            if (c.kind(p) != PageKind.DATA || removed.get(base / page + p)) {
                p++;
                continue;
            }
            int q = p;
            while (q < end && c.kind(q) == PageKind.DATA && !removed.get(base / page + q)) q++;
            long offset = base + p * page;
            MemorySegment run = data.run(p, q - p);
            writeSome(offset, run);
            if (options.mode() == UffdMode.MINOR) mapWritten(offset, run.byteSize());
            p = q;
        }
    }

    /** UFFDIO_CONTINUE over what the prefetcher wrote, page by page past pages already mapped. */
    private void mapWritten(long offset, long length) throws IOException {
        long at = 0;
        while (at < length && !unregistered) {
            long r = registration.continueAt(offset + at, length - at);
            if (r > 0) {
                at += r;
            } else if (r == Userfaultfd.RETRY) {
                Thread.onSpinWait();
            } else {
                at += page; // EXISTS: mapped by a fault; NO_PAGE: written by neither yet (a fault will)
            }
        }
    }

    // ---- shared ----

    private void verifyOnce(int index) throws IOException {
        long bit = 1L << (index & 63);
        if ((verified.get(index >>> 6) & bit) != 0) return;
        source.verifyChunk(index);
        verified.getAndAccumulate(index >>> 6, bit, (a, b) -> a | b);
    }

    private void fail(Throwable t) {
        synchronized (this) {
            if (failure == null) failure = t;
        }
        stopping = true;
        signalStop();
        done.countDown();
    }

    private void signalStop() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment one = a.allocate(ValueLayout.JAVA_LONG);
            one.set(ValueLayout.JAVA_LONG, 0, 1);
            stop.write(one);
        } catch (SyscallException ignored) {
            // the counter is already non-zero: the fault thread is waking anyway
        }
    }

    /**
     * Stops both threads and closes the userfaultfd (unregistering the range if it still is).
     * Threads still blocked on a fault then retry without it, and a page not yet restored reads as
     * zeros: close the guest memory too unless {@link #awaitPopulated} returned true. Does not close
     * the source or the guest memory.
     */
    @Override
    public void close() throws IOException {
        stopping = true;
        signalStop();
        try {
            faultThread.join();
            if (prefetchThread != null) prefetchThread.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            registration.close();
        } finally {
            stop.closeQuietly();
            mapping.close();
        }
    }
}
