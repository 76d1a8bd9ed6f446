package dev.gmem.restore;

import dev.gmem.fault.Latency;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Mapping;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkReader;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;

/**
 * Threads that check guest memory against the source while a lazy restore fills it, reading pages
 * in a random order: every data page; every other page (zero or hole) that is resident, as a
 * {@link Residency} tells without faulting anything in (SEEK_DATA on the guest's file, or mincore
 * on its mapping), at the start and again once the restore has settled; and a seeded sample of
 * {@link #ABSENT_SAMPLE} distinct absent ones, whose reads fault them in as zeros. A guest with no more other pages than that
 * has every page read. So a sparse terabyte costs its data and a few MiB, never its holes. Each
 * first read of a missing page blocks on its fault, so the time of every read is recorded too:
 * that is the fault latency a guest thread sees.
 */
public final class RandomReaders {
    private RandomReaders() {}

    /** At most this many absent zero or hole pages are read (faulted in): every one in a smaller guest. */
    public static final int ABSENT_SAMPLE = 4096;

    /** Guest bytes asked of mincore at once: its vector is one byte a page. */
    private static final long RESIDENCY_SLICE = 1L << 30;

    /**
     * @param pages pages read and compared: {@code dataPages} data pages, {@code residentOtherPages}
     *     zero or hole pages that were resident, the rest a sample of the absent ones
     * @param wrongPages pages that differ from the source; {@code firstWrongGuestAddress} the first one found (-1: none)
     * @param accessLatency every page read, in microseconds: p50, p90, p99, max
     */
    public record Result(
            long pages,
            long dataPages,
            long residentOtherPages,
            long wrongPages,
            long firstWrongGuestAddress,
            double elapsedMs,
            Latency accessLatency) {
        public long sampledPages() {
            return pages - dataPages - residentOtherPages;
        }
    }

    /** Where guest memory holds pages, as [start, end) pairs of offsets, read once as the check starts. Never faults a page in. */
    @FunctionalInterface
    public interface Residency {
        long[] extents() throws IOException;

        /** The guest's file knows: SEEK_DATA/SEEK_HOLE, one pair of calls a resident run (a memfd; not guest_memfd, which reports all data). */
        static Residency ofFile(Fd file, long size) {
            return () -> file.dataExtents(size);
        }

        /** The mapping knows: mincore, a byte a page in slices of 1 GiB (some 1.5 s per TiB on a shmem mapping). */
        static Residency ofMapping(MemorySegment guest, long pageSize) {
            return () -> {
                long[] out = new long[16];
                int n = 0;
                long runStart = -1;
                for (long from = 0; from < guest.byteSize(); from += RESIDENCY_SLICE) {
                    long len = Math.min(RESIDENCY_SLICE, guest.byteSize() - from);
                    byte[] in = Mapping.residency(guest.asSlice(from, len), pageSize);
                    for (int i = 0; i <= in.length; i++) {
                        boolean resident = i < in.length && (in[i] & 1) != 0;
                        long at = from + i * pageSize;
                        if (resident && runStart < 0) runStart = at;
                        if (!resident && runStart >= 0 && (i < in.length || from + len >= guest.byteSize())) {
                            if (n + 2 > out.length) out = java.util.Arrays.copyOf(out, out.length * 2);
                            out[n++] = runStart;
                            out[n++] = Math.min(at, guest.byteSize());
                            runStart = -1;
                        }
                    }
                }
                return java.util.Arrays.copyOf(out, n);
            };
        }
    }

    /** Says, after each page read, whether reading should go on: throws the error of the restore that fills the memory. */
    @FunctionalInterface
    public interface Health {
        void check() throws IOException;
    }

    /** Checks {@code guest} (laid out as {@code source}'s regions) on {@code threads} threads in an order drawn from {@code seed}, reading the pages the class comment names. */
    public static Result check(MemorySegment guest, PageSource source, long pageSize, int threads, long seed)
            throws IOException {
        return check(guest, source, pageSize, threads, seed, () -> {});
    }

    /**
     * As {@link #check(MemorySegment, PageSource, long, int, long)}, asking {@code health} after
     * every page: its error (a lazy restore that failed) stops every reader and is thrown.
     */
    public static Result check(
            MemorySegment guest, PageSource source, long pageSize, int threads, long seed, Health health)
            throws IOException {
        return check(guest, Residency.ofMapping(guest, pageSize), source, pageSize, threads, seed, health);
    }

    /** As {@link #check(MemorySegment, PageSource, long, int, long, Health)}, learning which pages are resident from {@code residency}. */
    public static Result check(
            MemorySegment guest,
            Residency residency,
            PageSource source,
            long pageSize,
            int threads,
            long seed,
            Health health)
            throws IOException {
        return check(guest, residency, source, pageSize, threads, seed, health, null);
    }

    /**
     * As {@link #check(MemorySegment, Residency, PageSource, long, int, long, Health)}, then, once
     * {@code settle} has returned (the restore has populated everything), a second look: every
     * zero page or hole that became resident since the start (a stray write while the prefetch ran,
     * say) and was not read is read now. Those reads fault nothing in.
     */
    public static Result check(
            MemorySegment guest,
            Residency residency,
            PageSource source,
            long pageSize,
            int threads,
            long seed,
            Health health,
            Health settle)
            throws IOException {
        PageIndex index = new PageIndex(source);
        Selection chosen = select(residency, source, index, pageSize, seed);
        long[] order = chosen.offsets();
        int pages = order.length;
        AtomicLong wrong = new AtomicLong();
        AtomicLong firstWrong = new AtomicLong(-1);
        Histogram latency = Latency.histogram();
        long t0 = System.nanoTime();
        try (Arena arena = Arena.ofShared()) {
            MemorySegment zeros = arena.allocate(pageSize, pageSize);
            long share = (pages + threads - 1) / threads;
            dev.gmem.util.Parallel.forEach(threads, "gmem-reader", threads, t -> {
                Histogram mine = Latency.histogram();
                try (ChunkReader reader = new ChunkReader(source)) {
                    for (long k = t * share; k < Math.min(pages, (t + 1) * share); k++) {
                        long offset = order[(int) k];
                        PageIndex.Location at = index.atFileOffset(offset);
                        MemorySegment expected = at != null && at.kind() == PageKind.DATA
                                ? expectedData(reader, at, offset, pageSize)
                                : zeros;
                        long s = System.nanoTime();
                        // in C: a thread blocked on a fault must not be inside Java code (see Posix.mismatch)
                        long diff = dev.gmem.linux.Posix.mismatch(guest.asSlice(offset, pageSize), expected, pageSize);
                        mine.recordValue(Math.min(System.nanoTime() - s, Latency.MAX_NANOS));
                        health.check();
                        if (diff >= 0) {
                            wrong.incrementAndGet();
                            firstWrong.compareAndSet(-1, index.guestOfFileOffset(offset));
                        }
                    }
                }
                synchronized (latency) {
                    latency.add(mine);
                }
            });
        }
        long later = 0;
        if (settle != null) {
            settle.check();
            if (chosen.residentAtStart() != null) {
                try (Arena arena = Arena.ofConfined()) {
                    MemorySegment zeros = arena.allocate(pageSize, pageSize);
                    long[] now = residency.extents();
                    for (int i = 0; i < now.length; i += 2) {
                        for (long offset = now[i] / pageSize * pageSize;
                                offset < Math.min(now[i + 1], source.size());
                                offset += pageSize) {
                            if (isData(index, offset)
                                    || within(chosen.residentAtStart(), offset)
                                    || chosen.sampled().contains(offset)) continue;
                            later++;
                            if (dev.gmem.linux.Posix.mismatch(guest.asSlice(offset, pageSize), zeros, pageSize) >= 0) {
                                wrong.incrementAndGet();
                                firstWrong.compareAndSet(-1, index.guestOfFileOffset(offset));
                            }
                        }
                    }
                }
            }
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        return new Result(
                pages + later,
                chosen.data(),
                chosen.residentOther() + later,
                wrong.get(),
                firstWrong.get(),
                ms,
                Latency.of(latency));
    }

    /** The source's bytes of the {@code pageSize} unit at file offset {@code offset}, which may lie inside a larger region page. */
    private static MemorySegment expectedData(ChunkReader reader, PageIndex.Location at, long offset, long pageSize)
            throws IOException {
        Region r = at.region();
        long within = (offset - r.fileOffset()) % r.pageSize();
        return reader.page(at).asSlice(within, pageSize);
    }

    /**
     * The file offsets of the pages to read, shuffled; how many of them are data and resident other
     * pages; and, for the second look, the resident extents at the start and the sampled pages
     * (null extents: every page was chosen).
     */
    private record Selection(
            long[] offsets, long data, long residentOther, long[] residentAtStart, java.util.Set<Long> sampled) {}

    private static Selection select(Residency residency, PageSource source, PageIndex index, long pageSize, long seed)
            throws IOException {
        long pages = source.size() / pageSize;
        long dataUnits = 0;
        for (Chunk c : source.chunks())
            dataUnits +=
                    (long) c.dataPages() * (source.regions().get(c.region()).pageSize() / pageSize);
        LongList chosen = new LongList(Math.toIntExact(Math.min(pages, dataUnits + ABSENT_SAMPLE)));
        for (Chunk c : source.chunks()) {
            Region r = source.regions().get(c.region());
            for (int p = 0; p < c.pages(); p++) {
                if (c.kind(p) != PageKind.DATA) continue;
                long at = r.fileOffset() + (c.firstPage() + p) * r.pageSize();
                for (long u = 0; u < r.pageSize(); u += pageSize) chosen.add(at + u);
            }
        }
        long others = pages - dataUnits;
        if (others <= ABSENT_SAMPLE) {
            for (long page = 0; page < pages; page++) {
                if (!isData(index, page * pageSize)) chosen.add(page * pageSize);
            }
            long[] order = chosen.toArray();
            shuffle(order, seed);
            return new Selection(order, dataUnits, 0, null, java.util.Set.of());
        }
        long[] runs = residency.extents();
        long resident = 0;
        for (int i = 0; i < runs.length; i += 2) {
            for (long offset = runs[i] / pageSize * pageSize;
                    offset < Math.min(runs[i + 1], source.size());
                    offset += pageSize) {
                if (!isData(index, offset)) {
                    chosen.add(offset);
                    resident++;
                }
            }
        }
        // ABSENT_SAMPLE distinct absent pages, drawn with the seed: by rejection where they are common, else by a
        // reservoir over every page
        java.util.Set<Long> sampled = new java.util.HashSet<>();
        SplittableRandom r = new SplittableRandom(seed ^ 0x5DEECE66DL);
        if (others >= pages / 64) {
            for (long tries = 0; sampled.size() < ABSENT_SAMPLE && tries < 256L * ABSENT_SAMPLE; tries++) {
                long offset = r.nextLong(pages) * pageSize;
                if (!isData(index, offset) && !within(runs, offset)) sampled.add(offset);
            }
        } else {
            long[] reservoir = new long[ABSENT_SAMPLE];
            long seen = 0;
            for (long page = 0; page < pages; page++) {
                long offset = page * pageSize;
                if (isData(index, offset) || within(runs, offset)) continue;
                if (seen < ABSENT_SAMPLE) reservoir[(int) seen] = offset;
                else if (r.nextLong(seen + 1) < ABSENT_SAMPLE) reservoir[r.nextInt(ABSENT_SAMPLE)] = offset;
                seen++;
            }
            for (int i = 0; i < Math.min(seen, ABSENT_SAMPLE); i++) sampled.add(reservoir[i]);
        }
        for (long offset : sampled) chosen.add(offset);
        long[] order = chosen.toArray();
        shuffle(order, seed);
        return new Selection(order, dataUnits, resident, runs, sampled);
    }

    /** Whether {@code offset} lies in one of the sorted [start, end) pairs of {@code runs}. */
    private static boolean within(long[] runs, long offset) {
        int lo = 0;
        int hi = runs.length / 2 - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (offset < runs[2 * mid]) hi = mid - 1;
            else if (offset >= runs[2 * mid + 1]) lo = mid + 1;
            else return true;
        }
        return false;
    }

    private static boolean isData(PageIndex index, long offset) {
        PageIndex.Location at = index.atFileOffset(offset);
        return at != null && at.kind() == PageKind.DATA;
    }

    /** A growable array of longs: a boxed list of millions of page offsets would cost ten times the memory. */
    private static final class LongList {
        private long[] a;
        private int n;

        LongList(int capacity) {
            a = new long[Math.max(16, capacity)];
        }

        void add(long v) {
            if (n == a.length) a = java.util.Arrays.copyOf(a, Math.toIntExact(Math.min(Integer.MAX_VALUE - 8, 2L * n)));
            a[n++] = v;
        }

        long[] toArray() {
            return java.util.Arrays.copyOf(a, n);
        }
    }

    private static void shuffle(long[] p, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = p.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            long x = p[i];
            p[i] = p[j];
            p[j] = x;
        }
    }
}
