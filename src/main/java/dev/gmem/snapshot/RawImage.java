package dev.gmem.snapshot;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * A raw VMM memory file: regions laid end to end, no header, holes where memory was never written
 * (Firecracker's memory snapshot, QEMU's file-backed RAM). Opening it finds the holes with
 * SEEK_DATA/SEEK_HOLE, then reads the data once to tell zero pages from data pages, so that a
 * restore or a pack touches only data. It is read with pread into gmem's own buffers: a file
 * truncated under gmem gives a {@link SourceChangedException}, never a SIGBUS in the JVM. A
 * read-only mapping serves {@link #readInPlace} alone (system calls and Java copies only).
 */
public final class RawImage implements PageSource {
    private final Path path;
    private final Fd fd;
    /** Read-only, shared: for {@link #readInPlace} only. */
    private final Mapping mapping;

    private final long size;
    private final List<Region> regions;
    private final List<Chunk> chunks;

    private RawImage(Path path, Fd fd, Mapping mapping, long size, List<Region> regions, List<Chunk> chunks) {
        this.path = path;
        this.fd = fd;
        this.mapping = mapping;
        this.size = size;
        this.regions = regions;
        this.chunks = chunks;
    }

    /**
     * Opens {@code path} with {@code regions} (null: one region at guest address 0 covering the file,
     * with 4 KiB pages), and scans it on {@code threads} threads, reporting bytes scanned.
     *
     * @throws SnapshotFormatException when the file's size is not the regions' total
     */
    public static RawImage open(Path path, List<Region> regions, int threads, LongConsumer progress)
            throws IOException {
        PageSources.checkInput(path);
        Fd fd = Fd.open(path, Linux.O_RDONLY | Linux.O_CLOEXEC, 0);
        try {
            long size = fd.lseek(0, Linux.SEEK_END);
            if (regions == null) {
                if (size == 0 || size % Region.MIN_PAGE != 0) {
                    throw new SnapshotFormatException(
                            path,
                            "raw memory file of " + size + " bytes: its size must be a positive multiple of "
                                    + Region.MIN_PAGE);
                }
                regions = Region.whole(size, Region.MIN_PAGE);
            }
            long expected = Region.totalSize(regions);
            if (size != expected) {
                throw new SnapshotFormatException(
                        path,
                        "raw memory file is " + size + " bytes, but its regions add up to " + expected + " bytes");
            }
            long[] extents = fd.dataExtents(size);
            List<Chunk> chunks = scan(path, fd, regions, extents, threads, progress);
            return new RawImage(
                    path, fd, Mapping.map(fd, 0, size, Linux.PROT_READ, Linux.MAP_SHARED), size, regions, chunks);
        } catch (Throwable e) {
            fd.closeQuietly();
            throw e;
        }
    }

    /** Classifies every page, reading the windows that hold data with pread (a file truncated meanwhile gives a short read, never a SIGBUS). */
    private static List<Chunk> scan(
            Path path, Fd file, List<Region> regions, long[] extents, int threads, LongConsumer progress)
            throws IOException {
        // only the windows that data extents touch: a huge sparse file costs what its data costs, not its size
        long[] windows = new long[48]; // {region, firstPage, pages} triples
        int count = 0;
        for (int r = 0; r < regions.size(); r++) {
            Region reg = regions.get(r);
            long w = Math.max(1, SnapshotFormat.CHUNK_BYTES / reg.pageSize());
            long windowSpan = w * reg.pageSize();
            long last = -1;
            for (int k = firstExtentEndingAfter(extents, reg.fileOffset());
                    k < extents.length && extents[k] < reg.fileEnd();
                    k += 2) {
                long from = (Math.max(extents[k], reg.fileOffset()) - reg.fileOffset()) / windowSpan;
                long to = (Math.min(extents[k + 1], reg.fileEnd()) - 1 - reg.fileOffset()) / windowSpan;
                for (long x = Math.max(from, last + 1); x <= to; x++) {
                    if (count + 3 > windows.length) windows = java.util.Arrays.copyOf(windows, windows.length * 2);
                    windows[count++] = r;
                    windows[count++] = x * w;
                    windows[count++] = Math.min(w, reg.pages() - x * w);
                    last = x;
                }
            }
        }
        long[] found = windows;
        int windowCount = count / 3;
        long maxPage = regions.stream().mapToLong(Region::pageSize).max().orElseThrow();
        long windowBytes = windowBytes(regions);
        Chunk[] out = new Chunk[windowCount];
        java.util.concurrent.atomic.AtomicLong scanned = new java.util.concurrent.atomic.AtomicLong();
        try (Arena arena = Arena.ofShared()) {
            MemorySegment zeros = arena.allocate(maxPage, 4096);
            ThreadLocal<MemorySegment> buffers = ThreadLocal.withInitial(() -> arena.allocate(windowBytes, 4096));
            Parallel.forEach(threads, "gmem-scan", windowCount, i -> {
                long[] w = {found[3 * i], found[3 * i + 1], found[3 * i + 2]};
                Region reg = regions.get((int) w[0]);
                long ps = reg.pageSize();
                int pages = (int) w[2];
                long start = reg.fileOffset() + w[1] * ps;
                long[] data = new long[SnapshotFormat.MAP_WORDS];
                long[] zero = new long[SnapshotFormat.MAP_WORDS];
                int dataPages = 0;
                boolean any = false;
                int k = firstExtentEndingAfter(extents, start);
                MemorySegment window = null;
                for (int p = 0; p < pages; p++) {
                    long at = start + p * ps;
                    while (k < extents.length && extents[k + 1] <= at) k += 2;
                    if (k >= extents.length || extents[k] >= at + ps) continue; // the whole page is a hole
                    any = true;
                    if (window == null)
                        window = readFully(path, file, buffers.get().asSlice(0, pages * ps), start);
                    if (MemorySegment.mismatch(window, p * ps, (p + 1) * ps, zeros, 0, ps) == -1) {
                        Chunk.set(zero, p);
                    } else {
                        Chunk.set(data, p);
                        dataPages++;
                    }
                }
                if (any) {
                    int raw = Math.toIntExact(dataPages * ps);
                    out[i] = new Chunk(
                            (int) w[0], w[1], pages, data, zero, Codec.NONE, dataPages == 0 ? 0 : start, raw, raw, 0);
                }
                progress.accept(pages * ps);
                scanned.addAndGet(pages * ps);
            });
        }
        progress.accept(Region.totalSize(regions) - scanned.get()); // the holes, at no cost
        List<Chunk> chunks = new ArrayList<>();
        for (Chunk c : out) {
            if (c != null) chunks.add(c);
        }
        return List.copyOf(chunks);
    }

    private static int firstExtentEndingAfter(long[] extents, long at) {
        int lo = 0, hi = extents.length / 2;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (extents[2 * mid + 1] <= at) lo = mid + 1;
            else hi = mid;
        }
        return 2 * lo;
    }

    @Override
    public Path path() {
        return path;
    }

    @Override
    public String format() {
        return "raw";
    }

    @Override
    public List<Region> regions() {
        return regions;
    }

    @Override
    public List<Chunk> chunks() {
        return chunks;
    }

    @Override
    public long[] accessOrder() {
        return new long[0];
    }

    /** One window, in place. */
    @Override
    public long scratchBytes() {
        return windowBytes(regions);
    }

    private static long windowBytes(List<Region> regions) {
        long max = 0;
        for (Region r : regions)
            max = Math.max(max, Math.max(1, SnapshotFormat.CHUNK_BYTES / r.pageSize()) * r.pageSize());
        return max;
    }

    /** The chunk's data pages read into {@code scratch} in place (holes and zero pages are not read). */
    @Override
    public ChunkData read(int index, MemorySegment scratch) throws IOException {
        Chunk c = chunks.get(index);
        Region r = regions.get(c.region());
        long ps = r.pageSize();
        long start = r.fileOffset() + c.firstPage() * ps;
        MemorySegment window = scratch.asSlice(0, c.pages() * ps);
        c.forEachDataRun((first, n) -> readFully(path, fd, window.asSlice(first * ps, n * ps), start + first * ps));
        return new ChunkData(c, window, false, ps);
    }

    @Override
    public MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch) throws IOException {
        Chunk c = chunks.get(index);
        Region r = regions.get(c.region());
        long at = r.fileOffset() + (c.firstPage() + firstPage) * r.pageSize();
        return readFully(path, fd, scratch.asSlice(0, pages * r.pageSize()), at);
    }

    @Override
    public ChunkData readInPlace(int index) {
        Chunk c = chunks.get(index);
        Region r = regions.get(c.region());
        return new ChunkData(
                c,
                mapping.segment().asSlice(r.fileOffset() + c.firstPage() * r.pageSize(), c.pages() * r.pageSize()),
                false,
                r.pageSize());
    }

    @Override
    public void checkUnchanged() throws IOException {
        long now = fd.lseek(0, Linux.SEEK_END);
        if (now != size)
            throw new SourceChangedException(
                    path, "it was " + size + " bytes when opened and is " + now + " bytes now");
    }

    private static MemorySegment readFully(Path path, Fd fd, MemorySegment into, long offset) throws IOException {
        long n = fd.preadFully(into, offset);
        if (n != into.byteSize()) {
            throw new SourceChangedException(
                    path,
                    "bytes " + offset + " to " + (offset + into.byteSize())
                            + " were validated, but the file now ends at " + (offset + n));
        }
        return into;
    }

    /** A raw file carries no checksums. */
    @Override
    public void verify(int threads, LongConsumer progress) {}

    @Override
    public void close() throws IOException {
        mapping.close();
        fd.close();
    }
}
