package dev.gmem.snapshot;

import java.util.Arrays;

/**
 * One chunk of a snapshot: a window of up to {@link SnapshotFormat#MAX_CHUNK_PAGES} consecutive
 * pages of one region, which pages of it are data and which zero (the rest are holes), and where
 * the data pages are stored, packed in page order. A window with no data and no zero pages has
 * no chunk.
 *
 * @param region index into the snapshot's regions
 * @param firstPage the window's first page, counted from the region's start
 * @param pages pages in the window
 * @param dataMap bit i set: page i of the window is data ({@link SnapshotFormat#MAP_WORDS} words)
 * @param zeroMap bit i set: page i of the window is zero
 * @param codec how the data is stored
 * @param offset where the stored data starts in the snapshot file (or the raw file, for a raw source)
 * @param storedLength stored bytes
 * @param rawLength data bytes once decoded: data pages times the page size
 * @param crc32c CRC32C of the stored bytes (0 and unused for a raw source)
 */
public record Chunk(
        int region,
        long firstPage,
        int pages,
        long[] dataMap,
        long[] zeroMap,
        Codec codec,
        long offset,
        int storedLength,
        int rawLength,
        int crc32c) {

    public PageKind kind(int page) {
        if (test(dataMap, page)) return PageKind.DATA;
        return test(zeroMap, page) ? PageKind.ZERO : PageKind.HOLE;
    }

    public int dataPages() {
        return count(dataMap);
    }

    public int zeroPages() {
        return count(zeroMap);
    }

    public int holePages() {
        return pages - dataPages() - zeroPages();
    }

    /** Data pages before window page {@code page}: where it sits in the packed data. */
    public int rank(int page) {
        int n = 0;
        for (int w = 0; w < page >>> 6; w++) n += Long.bitCount(dataMap[w]);
        int rest = page & 63;
        if (rest != 0) n += Long.bitCount(dataMap[page >>> 6] & ((1L << rest) - 1));
        return n;
    }

    /** Calls {@code run} for each maximal run of consecutive data pages, in order. */
    public <E extends Exception> void forEachDataRun(RunConsumer<E> run) throws E {
        int p = 0;
        while (p < pages) {
            if (!test(dataMap, p)) {
                p++;
                continue;
            }
            int start = p;
            while (p < pages && test(dataMap, p)) p++;
            run.accept(start, p - start);
        }
    }

    @FunctionalInterface
    public interface RunConsumer<E extends Exception> {
        void accept(int firstPage, int pages) throws E;
    }

    public static boolean test(long[] map, int page) {
        return (map[page >>> 6] & (1L << (page & 63))) != 0;
    }

    static void set(long[] map, int page) {
        map[page >>> 6] |= 1L << (page & 63);
    }

    private static int count(long[] map) {
        int n = 0;
        for (long w : map) n += Long.bitCount(w);
        return n;
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Chunk c
                && region == c.region
                && firstPage == c.firstPage
                && pages == c.pages
                && Arrays.equals(dataMap, c.dataMap)
                && Arrays.equals(zeroMap, c.zeroMap)
                && codec == c.codec
                && offset == c.offset
                && storedLength == c.storedLength
                && rawLength == c.rawLength
                && crc32c == c.crc32c;
    }

    @Override
    public int hashCode() {
        return Long.hashCode(firstPage) * 31 + region * 17 + Arrays.hashCode(dataMap);
    }

    @Override
    public String toString() {
        return "chunk(region " + region + ", pages " + firstPage + "+" + pages + ", " + dataPages() + " data, "
                + zeroPages() + " zero, " + codec.label() + " " + storedLength + " bytes at " + offset + ")";
    }
}
