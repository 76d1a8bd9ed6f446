package dev.gmem.snapshot;

import java.util.List;

/** Pages and bytes of a snapshot by kind. Byte counts are exact when regions have different page sizes. */
public record PageCounts(
        long dataPages,
        long zeroPages,
        long holePages,
        long dataBytes,
        long zeroBytes,
        long holeBytes,
        long storedBytes) {
    public static PageCounts of(List<Region> regions, List<Chunk> chunks) {
        long data = 0, zero = 0, dataB = 0, zeroB = 0, stored = 0, totalPages = 0, total = 0;
        for (Region r : regions) {
            totalPages += r.pages();
            total += r.size();
        }
        for (Chunk c : chunks) {
            long ps = regions.get(c.region()).pageSize();
            data += c.dataPages();
            zero += c.zeroPages();
            dataB += c.dataPages() * ps;
            zeroB += c.zeroPages() * ps;
            stored += c.storedLength();
        }
        return new PageCounts(data, zero, totalPages - data - zero, dataB, zeroB, total - dataB - zeroB, stored);
    }

    public long pages() {
        return dataPages + zeroPages + holePages;
    }
}
