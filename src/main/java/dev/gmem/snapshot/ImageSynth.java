package dev.gmem.snapshot;

import dev.gmem.util.OutputFile;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongConsumer;

/**
 * Deterministic synthetic guest memory images, for tests, benchmarks and the demo. The same
 * options and seed give the same bytes on any machine. Pages come in runs of
 * {@value #RUN_PAGES} (64 KiB, as memory is used in practice) of one kind:
 * <ul>
 *   <li>hole: never written (the file stays sparse there);
 *   <li>zero: written with zeros;
 *   <li>duplicate: a copy of one of {@value #TEMPLATES} template pages (shared libraries, page caches);
 *   <li>text: ASCII words and lines, compressible;
 *   <li>random: incompressible bytes.
 * </ul>
 * Of the pages that are none of the first three kinds, 60% are text and 40% random.
 */
public final class ImageSynth {
    static final int RUN_PAGES = 16;
    static final int TEMPLATES = 32;
    private static final long PAGE = 4096;
    private static final String[] WORDS =
            ("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you"
                            + " were her she there been one all we their has would when if so no will can more other its into only time some could them these"
                            + " kvm guest memory page fault snapshot restore vcpu region file write map kernel")
                    .split(" ");

    private ImageSynth() {}

    /** The mix, as fractions of all pages; the rest is text and random data. */
    public record Mix(double hole, double zero, double duplicate) {
        public Mix {
            for (double f : new double[] {hole, zero, duplicate}) {
                if (!(f >= 0 && f <= 1)) throw new IllegalArgumentException("fractions must lie between 0% and 100%");
            }
            if (hole + zero + duplicate > 1.0000001)
                throw new IllegalArgumentException("hole, zero and duplicate pages add up to more than 100%");
        }
    }

    /** Pages written of each kind. */
    public record Result(
            Path output,
            long size,
            long holePages,
            long zeroPages,
            long duplicatePages,
            long textPages,
            long randomPages) {
        public long dataPages() {
            return duplicatePages + textPages + randomPages;
        }
    }

    enum Kind {
        HOLE,
        ZERO,
        DUPLICATE,
        TEXT,
        RANDOM
    }

    /** Writes a {@code size}-byte image (a multiple of 4096) to {@code output}, on {@code threads} threads. */
    public static Result generate(Path output, long size, Mix mix, long seed, int threads, LongConsumer progress)
            throws IOException {
        if (size <= 0 || size % PAGE != 0)
            throw new IllegalArgumentException("the image size must be a positive multiple of 4096, not " + size);
        long pages = size / PAGE;
        int windowPages = SnapshotFormat.CHUNK_BYTES / (int) PAGE;
        long windows = (pages + windowPages - 1) / windowPages;
        AtomicLongArray counts = new AtomicLongArray(Kind.values().length);
        try (OutputFile file = OutputFile.create(output, OutputFile.Mode.REPLACE, 0644);
                Arena arena = Arena.ofShared()) {
            file.fd().truncate(size);
            MemorySegment templates = arena.allocate(TEMPLATES * PAGE, PAGE);
            for (int t = 0; t < TEMPLATES; t++)
                fillText(templates.asSlice(t * PAGE, PAGE), new SplittableRandom(seed * 31 + t));
            ThreadLocal<MemorySegment> buffers =
                    ThreadLocal.withInitial(() -> arena.allocate(SnapshotFormat.CHUNK_BYTES, PAGE));
            Parallel.forEach(threads, "gmem-synth", Math.toIntExact(windows), w -> {
                MemorySegment buf = buffers.get();
                long first = (long) w * windowPages;
                int n = (int) Math.min(windowPages, pages - first);
                long[] local = new long[Kind.values().length];
                int runStart = -1;
                for (int i = 0; i <= n; i++) {
                    Kind k = i < n ? kindOf(first + i, mix, seed) : Kind.HOLE;
                    if (k != Kind.HOLE) {
                        fill(buf.asSlice(i * PAGE, PAGE), k, first + i, seed, templates);
                        if (runStart < 0) runStart = i;
                    } else if (runStart >= 0) {
                        file.fd()
                                .pwriteFully(
                                        buf.asSlice(runStart * PAGE, (i - runStart) * PAGE), (first + runStart) * PAGE);
                        runStart = -1;
                    }
                    if (i < n) local[k.ordinal()]++;
                }
                for (int k = 0; k < local.length; k++) counts.addAndGet(k, local[k]);
                progress.accept(n * PAGE);
            });
            file.commit();
        }
        return new Result(output, size, counts.get(0), counts.get(1), counts.get(2), counts.get(3), counts.get(4));
    }

    static Kind kindOf(long page, Mix mix, long seed) {
        double u = unit(mix(seed ^ 0x9E3779B97F4A7C15L * (page / RUN_PAGES + 1)));
        if (u < mix.hole()) return Kind.HOLE;
        if (u < mix.hole() + mix.zero()) return Kind.ZERO;
        if (u < mix.hole() + mix.zero() + mix.duplicate()) return Kind.DUPLICATE;
        return unit(mix(seed * 7 + page)) < 0.6 ? Kind.TEXT : Kind.RANDOM;
    }

    private static void fill(MemorySegment page, Kind k, long index, long seed, MemorySegment templates) {
        switch (k) {
            case ZERO -> page.fill((byte) 0);
            case DUPLICATE ->
                MemorySegment.copy(templates, (Math.floorMod(mix(seed + index), TEMPLATES)) * PAGE, page, 0, PAGE);
            case TEXT -> fillText(page, new SplittableRandom(mix(seed ^ index)));
            case RANDOM -> {
                SplittableRandom r = new SplittableRandom(mix(seed + 0x51ED27L * index));
                for (long o = 0; o < PAGE; o += 8) page.set(ValueLayout.JAVA_LONG_UNALIGNED, o, r.nextLong());
                // never all zeros, so that it is data
                page.set(ValueLayout.JAVA_BYTE, 0, (byte) 0x5a);
            }
            case HOLE -> throw new IllegalStateException();
        }
    }

    private static final byte[][] WORD_BYTES = java.util.Arrays.stream(WORDS)
            .map(w -> w.getBytes(StandardCharsets.US_ASCII))
            .toArray(byte[][]::new);
    private static final ThreadLocal<byte[]> TEXT = ThreadLocal.withInitial(() -> new byte[(int) PAGE]);

    private static void fillText(MemorySegment page, SplittableRandom r) {
        byte[] text = TEXT.get();
        int at = 0;
        int column = 0;
        while (at < text.length) {
            byte[] w = WORD_BYTES[r.nextInt(WORD_BYTES.length)];
            int n = Math.min(w.length, text.length - at);
            System.arraycopy(w, 0, text, at, n);
            at += n;
            column += n + 1;
            if (at < text.length) text[at++] = (byte) (column > 72 ? '\n' : ' ');
            if (column > 72) column = 0;
        }
        MemorySegment.copy(text, 0, page, ValueLayout.JAVA_BYTE, 0, text.length);
    }

    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    private static double unit(long bits) {
        return (bits >>> 11) * 0x1.0p-53;
    }

    /**
     * A plausible page access order for an image made with these options: the data pages of a
     * working set ({@code fraction} of the data runs) in a seeded random order, as guest physical
     * addresses with the image starting at guest address 0.
     */
    public static long[] accessOrder(long size, Mix mix, long seed, double fraction) {
        long pages = size / PAGE;
        SplittableRandom r = new SplittableRandom(seed ^ 0xACCE55L);
        java.util.List<Long> runs = new java.util.ArrayList<>();
        for (long p = 0; p < pages; p += RUN_PAGES) {
            Kind k = kindOf(p, mix, seed);
            if ((k == Kind.TEXT || k == Kind.RANDOM || k == Kind.DUPLICATE) && r.nextDouble() < fraction) runs.add(p);
        }
        java.util.Collections.shuffle(runs, new java.util.Random(seed));
        long[] out = new long[runs.size() * RUN_PAGES];
        int n = 0;
        for (long p : runs) {
            for (long q = p; q < Math.min(pages, p + RUN_PAGES); q++) out[n++] = q * PAGE;
        }
        return java.util.Arrays.copyOf(out, n);
    }

    /**
     * Copies raw image {@code from} to {@code to} with one data page in {@code oneIn} (chosen with
     * {@code seed}, scattered over the whole image) overwritten with random bytes, and every window
     * listed in {@code zeroed} (chunk indexes of {@code from}) zeroed whole: a re-snapshot of the
     * same VM. Returns the pages changed.
     */
    public static long changed(Path from, Path to, int oneIn, long seed, java.util.Set<Integer> zeroed)
            throws IOException {
        java.nio.file.Files.copy(from, to, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        long changed = 0;
        try (RawImage image = RawImage.open(from, null, 2, b -> {});
                java.io.RandomAccessFile f = new java.io.RandomAccessFile(to.toFile(), "rw")) {
            java.util.Random r = new java.util.Random(seed);
            byte[] page = new byte[4096];
            java.util.List<Chunk> chunks = image.chunks();
            for (int i = 0; i < chunks.size(); i++) {
                Chunk c = chunks.get(i);
                if (zeroed.contains(i)) {
                    f.seek(c.firstPage() * 4096);
                    f.write(new byte[c.pages() * 4096]);
                    changed += c.dataPages();
                    continue;
                }
                for (int p = 0; p < c.pages(); p++) {
                    if (!Chunk.test(c.dataMap(), p) || r.nextInt(oneIn) != 0) continue;
                    r.nextBytes(page);
                    f.seek((c.firstPage() + p) * 4096);
                    f.write(page);
                    changed++;
                }
            }
        }
        return changed;
    }
}
