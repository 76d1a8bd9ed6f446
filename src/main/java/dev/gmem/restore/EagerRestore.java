package dev.gmem.restore;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.PageCounts;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.BitSet;
import java.util.List;
import java.util.Locale;
import java.util.function.LongConsumer;

/**
 * Eager restore: every data page of a source copied into guest memory before the guest runs.
 * Checksums are checked first, all of them, so a corrupt snapshot writes nothing; then the data
 * pages are populated with the strategy {@link Populator#choose} picks (or the one given), chunk
 * by chunk on the plan's threads. Zero pages and holes cost nothing: a fresh guest memory file
 * reads as zeros there.
 */
public final class EagerRestore {
    private static final double GIB = 1024.0 * 1024 * 1024;

    private EagerRestore() {}

    /**
     * {@code strategy} null: the one {@link Populator#choose} picks, with its threads; {@code threads}
     * 0: the plan's. {@code checkAhead}: every chunk's checksum is checked before any page is
     * written, so a damaged source fails the restore with the memory untouched; without it each
     * chunk is checked as it is read, in one pass over the source, for memory that no one else sees
     * yet and that is thrown away if the restore fails (a RAM file QEMU has not been given).
     */
    public record Options(Strategy strategy, int threads, boolean verify, boolean checkAhead) {
        public Options(Strategy strategy, int threads, boolean verify) {
            this(strategy, threads, verify, true);
        }

        public static Options automatic(boolean verify) {
            return new Options(null, 0, verify);
        }
    }

    /** What a restore did. Times in milliseconds; {@code gibPerS} is data bytes over the whole elapsed time. */
    public record Report(
            String source,
            String format,
            String backend,
            String strategy,
            int threads,
            String reason,
            long guestBytes,
            long bytesRestored,
            Pages pages,
            double checksumMs,
            double populateMs,
            double elapsedMs,
            double gibPerS,
            Double verifyMs,
            Boolean verified) {}

    public record Pages(long data, long zero, long hole) {}

    /** Restores {@code source} into {@code memory} (at least as large), reporting data bytes populated to {@code progress}. */
    public static Report restore(PageSource source, GuestMemory memory, Options options, LongConsumer progress)
            throws IOException {
        long start = System.nanoTime();
        if (memory.size() < source.size()) {
            throw new SourceMismatchException(source.name() + ": " + source.size()
                    + " bytes of guest memory do not fit in a " + memory.size() + "-byte guest memory file");
        }
        for (Region r : source.regions()) {
            if (r.pageSize() % memory.pageSize() != 0) {
                throw new SourceMismatchException(source.name() + ": page size " + r.pageSize()
                        + " is not a multiple of the guest memory's " + memory.pageSize());
            }
        }
        Populator.Plan plan = Populator.choose(memory);
        Strategy strategy = options.strategy() == null ? plan.strategy() : options.strategy();
        int threads = options.threads() > 0 ? options.threads() : options.strategy() == null ? plan.threads() : 1;
        String reason = options.strategy() == null ? plan.reason() : "asked for";
        int cpus = Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));

        if (options.checkAhead()) source.verify(cpus, b -> {});
        long checked = System.nanoTime();

        List<Chunk> chunks = source.chunks();
        List<Region> regions = source.regions();
        long scratchBytes = Math.max(1, source.scratchBytes());
        try (Arena arena = Arena.ofShared();
                Populator.Filler filler = Populator.Filler.open(strategy, memory, 0, source.size())) {
            ThreadLocal<MemorySegment> scratch = ThreadLocal.withInitial(() -> arena.allocate(scratchBytes, 4096));
            Parallel.forEach(threads, "gmem-restore", chunks.size(), i -> {
                Chunk c = chunks.get(i);
                if (c.dataPages() == 0) return;
                Region r = regions.get(c.region());
                // in place where it can be (the filler's pwrite or Java copy reads it, never native code), else
                // decoded;
                // checked as it is read when it was not checked ahead (in-place bytes are never checksummed)
                ChunkData inPlace = options.checkAhead() ? source.readInPlace(i) : null;
                long base = r.fileOffset() + c.firstPage() * r.pageSize();
                ChunkData data = inPlace != null
                        ? inPlace
                        : options.checkAhead() ? source.read(i, scratch.get()) : source.readVerified(i, scratch.get());
                try {
                    c.forEachDataRun((first, n) -> filler.fill(base + first * r.pageSize(), data.run(first, n)));
                } catch (InternalError | dev.gmem.linux.SyscallException e) {
                    throw explain(source, memory, base, (long) c.pages() * r.pageSize(), e);
                }
                progress.accept(c.rawLength());
            });
        }
        long populated = System.nanoTime();
        PageCounts counts = source.counts();
        Double verifyMs = null;
        Boolean verified = null;
        if (options.verify()) {
            verifyContents(source, memory, cpus);
            verifyMs = ms(System.nanoTime() - populated);
            verified = true;
        }
        double elapsed = ms(populated - start);
        return new Report(
                source.name(),
                source.format(),
                memory.backend().label(),
                strategy.label(),
                threads,
                reason,
                source.size(),
                counts.dataBytes(),
                new Pages(counts.dataPages(), counts.zeroPages(), counts.holePages()),
                ms(checked - start),
                ms(populated - checked),
                elapsed,
                counts.dataBytes() / GIB / (elapsed / 1000.0),
                verifyMs,
                verified);
    }

    /**
     * What a failed copy of the chunk at guest memory offset {@code offset} means: the source
     * changed under the restore (a truncated file faults in a copy or gives EFAULT in a write); or
     * the guest memory's file has no room (write() says ENOSPC; a copy into a mapping faults, and
     * MADV_POPULATE_WRITE says EFAULT, so an fallocate of the chunk's range asks the file system);
     * or else the error as it came.
     */
    static IOException explain(PageSource source, GuestMemory memory, long offset, long length, Throwable e)
            throws IOException {
        source.checkUnchanged();
        // asked of the file system even after write() said ENOSPC: the contract also says ENOSPC for a page already
        // populated
        boolean noSpace = false;
        try {
            memory.allocate(offset, Math.min(length, memory.size() - offset));
        } catch (SyscallException f) {
            noSpace = f.is(Errno.ENOSPC);
        } catch (IOException | RuntimeException ignored) {
            // not a question of space: the first error stands
        }
        if (noSpace) {
            return new RestoreFailedException(
                    "no space left for the guest memory at offset " + offset + " of " + memory.size()
                            + " bytes: its file system (or" + " the memory behind a memfd) is full (ENOSPC)",
                    e);
        }
        if (e instanceof IOException io) return io;
        return new RestoreFailedException(
                "copying the pages at guest memory offset " + offset + " met a memory fault: " + source.name()
                        + " could not be read there, or the guest memory could not take them",
                e);
    }

    /** A finished eager restore and its guest check (null where none was asked for). */
    public record Outcome(Report report, GuestVerdict guestCheck) {}

    /**
     * The use case the command line and the demo call: restores {@code source} into {@code dst},
     * proves it with a vCPU reading one page in {@code guestStride} (0: no guest check) where this
     * host has KVM, and commits {@code dst} (an export appears under its name) unless the guest
     * check failed. {@code status} hears each step's name.
     */
    public static Outcome run(
            PageSource source,
            Destination dst,
            Options options,
            long guestStride,
            java.time.Duration guestTimeout,
            LongConsumer progress,
            java.util.function.Consumer<String> status)
            throws IOException {
        Report report;
        try {
            report = restore(source, dst.memory(), options, progress);
        } catch (RestoreFailedException e) {
            if (dst.exportPath() == null) throw e;
            throw new RestoreFailedException("export to " + dst.exportPath() + ": " + e.getMessage(), e.getCause());
        }
        GuestVerdict guest = null;
        if (guestStride > 0) {
            status.accept("guest check: a vCPU reads the restored memory ...");
            guest = GuestVerdict.of(() -> GuestCheck.run(source, dst.memory(), null, guestStride, guestTimeout), null);
        }
        if (guest == null || !guest.failed()) dst.commit();
        return new Outcome(report, guest);
    }

    /**
     * Checks every page of {@code memory} against {@code source}: data pages byte for byte; zero and
     * hole pages must be unpopulated, or populated with zeros. Pages are read through a host
     * mapping, and only pages already in memory are read, so checking populates nothing.
     *
     * @throws RestoreVerificationException naming the first differing page and byte
     */
    public static void verifyContents(PageSource source, GuestMemory memory, int threads) throws IOException {
        long size = source.size();
        long page = memory.pageSize();
        if (memory.firstPrivate(0, size) >= 0) {
            throw new IOException("cannot verify: guest memory has private pages (from offset "
                    + memory.firstPrivate(0, size) + "), which the host cannot read");
        }
        List<Chunk> chunks = source.chunks();
        List<Region> regions = source.regions();
        long scratchBytes = Math.max(1, source.scratchBytes());
        try (HostMapping m = memory.map(0, size);
                Arena arena = Arena.ofShared()) {
            MemorySegment dst = m.segment();
            byte[] resident = m.residency(0, size);
            BitSet data = new BitSet(resident.length);
            ThreadLocal<MemorySegment> scratch = ThreadLocal.withInitial(() -> arena.allocate(scratchBytes, 4096));
            for (Chunk c : chunks) {
                Region r = regions.get(c.region());
                long base = r.fileOffset() + c.firstPage() * r.pageSize();
                c.forEachDataRun((first, n) -> data.set(
                        Math.toIntExact((base + first * r.pageSize()) / page),
                        Math.toIntExact((base + (first + n) * r.pageSize()) / page)));
            }
            Parallel.forEach(threads, "gmem-check", chunks.size(), i -> {
                Chunk c = chunks.get(i);
                if (c.dataPages() == 0) return;
                Region r = regions.get(c.region());
                ChunkData d = source.read(i, scratch.get());
                long base = r.fileOffset() + c.firstPage() * r.pageSize();
                c.forEachDataRun((first, n) -> {
                    MemorySegment expected = d.run(first, n);
                    long at = base + first * r.pageSize();
                    long diff =
                            MemorySegment.mismatch(expected, 0, expected.byteSize(), dst, at, at + expected.byteSize());
                    if (diff >= 0)
                        throw mismatch(
                                source,
                                at + diff,
                                expected.get(java.lang.foreign.ValueLayout.JAVA_BYTE, diff),
                                dst.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + diff));
                });
            });
            MemorySegment zeros = arena.allocate(page, 4096);
            for (int p = data.nextClearBit(0); p < resident.length; p = data.nextClearBit(p + 1)) {
                if ((resident[p] & 1) == 0) continue;
                long at = p * page;
                long diff = MemorySegment.mismatch(zeros, 0, page, dst, at, at + page);
                if (diff >= 0)
                    throw mismatch(
                            source, at + diff, (byte) 0, dst.get(java.lang.foreign.ValueLayout.JAVA_BYTE, at + diff));
            }
        }
    }

    private static RestoreVerificationException mismatch(
            PageSource source, long fileOffset, byte expected, byte found) {
        long gpa = new dev.gmem.snapshot.PageIndex(source).guestOfFileOffset(fileOffset);
        long pageGpa = gpa - Math.floorMod(gpa, 4096L);
        return new RestoreVerificationException(
                String.format(
                        Locale.ROOT,
                        "guest memory differs from %s: page at guest 0x%x (file offset %d), byte +%d: expected 0x%02x, found 0x%02x",
                        source.name(),
                        pageGpa,
                        fileOffset - Math.floorMod(fileOffset, 4096L),
                        Math.floorMod(fileOffset, 4096L),
                        expected & 0xff,
                        found & 0xff),
                pageGpa);
    }

    private static double ms(long nanos) {
        return nanos / 1e6;
    }
}
