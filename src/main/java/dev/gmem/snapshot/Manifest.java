package dev.gmem.snapshot;

import java.util.List;

/**
 * What a snapshot holds: its regions, its chunks in (region, page) order, the chunk window, the
 * codec asked for at pack time (each chunk records its own), and the guest's page access order
 * when one was recorded.
 *
 * @param chunkBytes the guest bytes a chunk window spans (a window holds
 *     {@code max(1, chunkBytes / pageSize)} pages of its region)
 * @param accessOrder guest physical addresses of pages in the order the guest touched them; may be empty
 * @param attachments the named bytes the snapshot carries besides guest memory, in file order; may be empty
 */
public record Manifest(
        int chunkBytes,
        Codec compression,
        List<Region> regions,
        List<Chunk> chunks,
        long[] accessOrder,
        List<Attachment> attachments) {
    /** A manifest without attachments. */
    public Manifest(int chunkBytes, Codec compression, List<Region> regions, List<Chunk> chunks, long[] accessOrder) {
        this(chunkBytes, compression, regions, chunks, accessOrder, List.of());
    }

    /** The attachment called {@code name}, or null. */
    public Attachment attachment(String name) {
        for (Attachment a : attachments) {
            if (a.name().equals(name)) return a;
        }
        return null;
    }

    /** Pages in a window of a region with {@code pageSize}. */
    public int windowPages(long pageSize) {
        return (int) Math.max(1, chunkBytes / pageSize);
    }

    /** Guest bytes: all regions laid end to end. */
    public long size() {
        return Region.totalSize(regions);
    }

    public PageCounts counts() {
        return PageCounts.of(regions, chunks);
    }
}
