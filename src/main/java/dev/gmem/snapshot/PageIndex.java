package dev.gmem.snapshot;

import java.util.Arrays;
import java.util.List;

/** Finds the chunk that holds a page of a {@link PageSource}, by file offset or guest physical address, in constant time per region. */
public final class PageIndex {
    private final List<Region> regions;
    private final List<Chunk> chunks;
    private final int[][] chunkOfWindow;
    private final int[] windowPages;

    /** Where a page lives: chunk {@code index} (null {@code chunk} and -1 for a page in no chunk, a hole), page {@code page} of its window. */
    public record Location(int index, Chunk chunk, int page, Region region) {
        public PageKind kind() {
            return chunk == null ? PageKind.HOLE : chunk.kind(page);
        }
    }

    public PageIndex(PageSource source) {
        this.regions = source.regions();
        this.chunks = source.chunks();
        this.chunkOfWindow = new int[regions.size()][];
        this.windowPages = new int[regions.size()];
        for (int r = 0; r < regions.size(); r++) {
            Region reg = regions.get(r);
            windowPages[r] = (int) Math.max(1, SnapshotFormat.CHUNK_BYTES / reg.pageSize());
            chunkOfWindow[r] = new int[Math.toIntExact((reg.pages() + windowPages[r] - 1) / windowPages[r])];
            Arrays.fill(chunkOfWindow[r], -1);
        }
        for (int i = 0; i < chunks.size(); i++) {
            Chunk c = chunks.get(i);
            chunkOfWindow[c.region()][(int) (c.firstPage() / windowPages[c.region()])] = i;
        }
    }

    /** The page at file offset {@code offset}, or null past the last region. */
    public Location atFileOffset(long offset) {
        for (int r = 0; r < regions.size(); r++) {
            Region reg = regions.get(r);
            if (offset < reg.fileOffset() || offset >= reg.fileEnd()) continue;
            long p = (offset - reg.fileOffset()) / reg.pageSize();
            int index = chunkOfWindow[r][(int) (p / windowPages[r])];
            if (index < 0) return new Location(-1, null, (int) (p % windowPages[r]), reg);
            Chunk c = chunks.get(index);
            return new Location(index, c, (int) (p - c.firstPage()), reg);
        }
        return null;
    }

    /** The file offset of guest physical address {@code gpa}, or -1 outside every region. */
    public long fileOffsetOfGuest(long gpa) {
        for (Region r : regions) {
            if (r.containsGuest(gpa)) return r.fileOffset() + (gpa - r.guestAddress());
        }
        return -1;
    }

    /** The guest physical address of file offset {@code offset}, or -1 past the last region. */
    public long guestOfFileOffset(long offset) {
        for (Region r : regions) {
            if (offset >= r.fileOffset() && offset < r.fileEnd()) return r.guestAddress() + (offset - r.fileOffset());
        }
        return -1;
    }
}
