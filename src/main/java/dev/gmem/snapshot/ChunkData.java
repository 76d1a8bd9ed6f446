package dev.gmem.snapshot;

import java.lang.foreign.MemorySegment;

/**
 * The data pages of one chunk, ready to copy: either packed in page order (a snapshot's chunk) or
 * in place, each page at its own position in the window (a raw memory file).
 */
public final class ChunkData {
    private final Chunk chunk;
    private final MemorySegment bytes;
    private final boolean packed;
    private final long pageSize;

    ChunkData(Chunk chunk, MemorySegment bytes, boolean packed, long pageSize) {
        this.chunk = chunk;
        this.bytes = bytes;
        this.packed = packed;
        this.pageSize = pageSize;
    }

    /** The data pages of {@code chunk}, packed in page order in {@code bytes}, of pages of {@code pageSize} bytes. */
    public static ChunkData packed(Chunk chunk, MemorySegment bytes, long pageSize) {
        return new ChunkData(chunk, bytes, true, pageSize);
    }

    public Chunk chunk() {
        return chunk;
    }

    /** All the bytes this holds: the packed data pages, or the window in place. */
    public MemorySegment bytes() {
        return bytes;
    }

    /** The bytes of {@code pages} data pages from window page {@code firstPage} on, which must all be data. */
    public MemorySegment run(int firstPage, int pages) {
        long at = (packed ? chunk.rank(firstPage) : firstPage) * pageSize;
        return bytes.asSlice(at, pages * pageSize);
    }

    /** All data pages packed in page order when they already are (a snapshot chunk, or one run in place), else null. */
    public MemorySegment packedOrNull() {
        if (packed) return bytes;
        int n = chunk.dataPages();
        int first = 0;
        while (first < chunk.pages() && !Chunk.test(chunk.dataMap(), first)) first++;
        for (int p = first; p < first + n; p++) {
            if (!Chunk.test(chunk.dataMap(), p)) return null; // a gap: the data pages are not one run
        }
        return bytes.asSlice(first * pageSize, n * pageSize);
    }
}
