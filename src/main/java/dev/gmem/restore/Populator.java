package dev.gmem.restore;

import dev.gmem.linux.Linux;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.probe.HostReport;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;

/**
 * Fills a range of guest memory from a source buffer with a {@link Strategy}, on one thread or
 * several (each on its own page-aligned slice), and chooses the strategy a restore should use.
 *
 * <p>With more than one thread, {@code source} must be accessible from other threads (off-heap
 * memory from a shared or global arena, or a mapping). The range must be unpopulated and shared: the mapped strategies copy through a host mapping
 * (so a private page is refused up front), and {@link Strategy#WRITE} keeps the populate-once rule
 * (ENOSPC on a populated page).
 */
public final class Populator {
    /** Slices handed to threads are multiples of this, so that huge pages are never split between threads. */
    private static final long SLICE_ALIGN = 2L << 20;

    private Populator() {}

    /** What a restore should use on {@code memory}, and why. */
    public record Plan(Strategy strategy, int threads, String reason) {}

    /** Whether {@code strategy} can run on {@code memory} here, and if not why. */
    public static Check availability(Strategy strategy, GuestMemory memory) {
        boolean mmap = memory.has(dev.gmem.kvm.GuestMemfdFlag.MMAP);
        return switch (strategy) {
            case MAPPED_COPY, POPULATE_COPY ->
                mmap
                        ? Check.yes("the file can be mapped")
                        : Check.no("the file was created without MMAP, so it cannot be mapped");
            case WRITE -> {
                yield memory.writePath() == dev.gmem.memory.MemoryCapabilities.WritePath.NONE
                        ? Check.no(memory.writeDescription())
                        : Check.yes(memory.writeDescription());
            }
            case THP_COPY -> {
                if (memory.backend() != GuestMemory.Backend.MEMFD) {
                    yield Check.no(
                            "transparent huge pages apply to shmem (the memfd backend); guest_memfd has its own allocator");
                }
                if (!mmap) yield Check.no("the file was created without MMAP, so it cannot be mapped");
                HostReport.HugePages h = HostProbe.hugePagesOfHost();
                yield h.thpShmem().available()
                        ? Check.yes(h.thpShmem().reason())
                        : Check.no(h.thpShmem().reason());
            }
        };
    }

    /**
     * The strategy a restore into {@code memory} should use on this host, with the reason. The
     * rules follow what the population benchmark measures: write() copies without a page fault per
     * page, so it wins wherever it is the kernel's own; one shmem file serialises writers on its
     * inode lock, so write() runs on one thread. Without the kernel's write(), bulk-faulting the
     * pages (MADV_POPULATE_WRITE) and copying scales across threads on disjoint ranges.
     */
    public static Plan choose(GuestMemory memory) {
        int cpus = Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));
        String write = memory.writeDescription();
        boolean kernelWrite = memory.writePath() == dev.gmem.memory.MemoryCapabilities.WritePath.KERNEL;
        if (kernelWrite) {
            return new Plan(
                    Strategy.WRITE,
                    1,
                    "the kernel's write() fills pages without a fault per page (" + write
                            + "); parallel writers into one file serialise on its inode lock, so one thread");
        }
        if (availability(Strategy.POPULATE_COPY, memory).available()) {
            return new Plan(
                    Strategy.POPULATE_COPY,
                    cpus,
                    "this kernel has no write() for guest_memfd; faulting pages in bulk with"
                            + " MADV_POPULATE_WRITE then copying avoids a fault per page, and scales over disjoint ranges on "
                            + cpus + " threads");
        }
        return new Plan(Strategy.WRITE, 1, "the file cannot be mapped; " + write);
    }

    /** Fills {@code [offset, offset+source.byteSize())} with the strategy {@link #choose} picks. Returns the plan used. */
    public static Plan populate(GuestMemory memory, long offset, MemorySegment source) throws IOException {
        Plan plan = choose(memory);
        populate(plan.strategy(), plan.threads(), memory, offset, source);
        return plan;
    }

    /** Fills {@code [offset, offset+source.byteSize())} of {@code memory} from {@code source} with {@code strategy} on {@code threads} threads. */
    public static void populate(Strategy strategy, int threads, GuestMemory memory, long offset, MemorySegment source)
            throws IOException {
        if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, not " + threads);
        long length = source.byteSize();
        if (length == 0) return;
        try (Filler filler = Filler.open(strategy, memory, offset, length)) {
            runSliced(threads, length, (from, to) -> filler.fill(offset + from, source.asSlice(from, to - from)));
        }
    }

    /**
     * Fills page-aligned ranges inside {@code [offset, offset+length)} of one guest memory file with
     * one strategy. Safe for many threads on disjoint ranges. A mapped strategy maps the whole
     * range once; each fill refuses a private page up front.
     */
    public static final class Filler implements AutoCloseable {
        private final Strategy strategy;
        private final GuestMemory memory;
        private final HostMapping mapping;
        private final long base;

        private Filler(Strategy strategy, GuestMemory memory, HostMapping mapping, long base) {
            this.strategy = strategy;
            this.memory = memory;
            this.mapping = mapping;
            this.base = base;
        }

        public static Filler open(Strategy strategy, GuestMemory memory, long offset, long length) throws IOException {
            Check available = availability(strategy, memory);
            if (!available.available()) {
                throw new dev.gmem.memory.UnsupportedFeatureException(
                        memory.backend().label(), "population strategy " + strategy.label(), available.reason());
            }
            if (strategy == Strategy.WRITE) return new Filler(strategy, memory, null, offset);
            HostMapping hm = memory.map(offset, length);
            if (strategy == Strategy.THP_COPY) hm.advise(0, length, Linux.MADV_HUGEPAGE);
            return new Filler(strategy, memory, hm, offset);
        }

        public Strategy strategy() {
            return strategy;
        }

        /** Populates {@code [offset, offset+source.byteSize())}, which must be unpopulated and shared, from {@code source}. */
        public void fill(long offset, MemorySegment source) throws IOException {
            long length = source.byteSize();
            if (length == 0) return;
            if (mapping == null) {
                writeFully(memory, offset, source);
                return;
            }
            long privatePage = memory.firstPrivate(offset, length);
            if (privatePage >= 0) {
                throw new dev.gmem.memory.PrivateMemoryException(privatePage);
            }
            long at = offset - base;
            if (strategy != Strategy.MAPPED_COPY) mapping.advise(at, length, Linux.MADV_POPULATE_WRITE);
            MemorySegment.copy(source, 0, mapping.segment(), at, length);
        }

        @Override
        public void close() {
            if (mapping != null) mapping.close();
        }
    }

    private static void writeFully(GuestMemory memory, long offset, MemorySegment source) throws IOException {
        long done = 0;
        while (done < source.byteSize()) {
            long n = memory.write(offset + done, source.asSlice(done));
            if (n <= 0)
                throw new IllegalStateException("write at offset " + (offset + done)
                        + " made no progress"); // write() fails rather than return 0
            done += n;
            if (n % memory.pageSize() != 0) {
                throw new SourceUnreadableException(
                        "population stopped at offset " + (offset + done)
                                + ": the source could not be read past this point",
                        offset + done);
            }
        }
    }

    @FunctionalInterface
    private interface SliceTask {
        void run(long from, long to) throws IOException;
    }

    /** Runs {@code task} over {@code threads} contiguous slices of {@code [0, length)}; the caller's thread takes the first. */
    private static void runSliced(int threads, long length, SliceTask task) throws IOException {
        long sliceSize = Math.max(SLICE_ALIGN, (length / threads + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN);
        int slices = (int) Math.min(threads, (length + sliceSize - 1) / sliceSize);
        if (slices <= 1) {
            task.run(0, length);
            return;
        }
        List<Thread> workers = new ArrayList<>();
        Throwable[] failures = new Throwable[slices];
        for (int i = 1; i < slices; i++) {
            int index = i;
            long from = i * sliceSize;
            long to = Math.min(length, from + sliceSize);
            workers.add(Thread.ofPlatform().name("gmem-populate-" + i).start(() -> {
                try {
                    task.run(from, to);
                } catch (Throwable t) {
                    failures[index] = t;
                }
            }));
        }
        try {
            task.run(0, Math.min(length, sliceSize));
        } catch (Throwable t) {
            failures[0] = t;
        }
        for (Thread w : workers) {
            try {
                w.join();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while waiting for population threads", e);
            }
        }
        for (Throwable t : failures) {
            if (t == null) continue;
            if (t instanceof IOException io) throw io;
            if (t instanceof RuntimeException re) throw re;
            if (t instanceof Error err) throw err;
            throw new IOException(t);
        }
    }
}
