package dev.gmem.snapshot;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.zip.CRC32C;

/**
 * A gmem snapshot file, open for reading. {@link #open} checks the header and the whole manifest
 * (see {@link SnapshotFormat}); {@link #verify} checks every chunk's data against its CRC32C.
 * The file is mapped read-only and shared; it must not be truncated while open (the packer never
 * rewrites a snapshot in place: it writes a new file and renames it).
 */
public final class Snapshot implements PageSource {
    private final Path path;
    private final Fd fd;
    private final Mapping mapping;
    private final Manifest manifest;
    private final long fileSize;

    private Snapshot(Path path, Fd fd, Mapping mapping, Manifest manifest, long fileSize) {
        this.path = path;
        this.fd = fd;
        this.mapping = mapping;
        this.manifest = manifest;
        this.fileSize = fileSize;
    }

    /** Opens and validates {@code path}; nothing of its data is trusted until {@link #verify} (or a per-chunk {@link #verifyChunk}). */
    public static Snapshot open(Path path) throws IOException {
        PageSources.checkInput(path);
        Fd fd = Fd.open(path, Linux.O_RDONLY | Linux.O_CLOEXEC, 0);
        Mapping mapping = null;
        try {
            long size = fd.lseek(0, Linux.SEEK_END);
            if (size < SnapshotFormat.HEADER_SIZE) {
                throw new SnapshotFormatException(path, "truncated: " + size + " bytes, shorter than the " + SnapshotFormat.HEADER_SIZE + "-byte snapshot header");
            }
            mapping = Mapping.map(fd, 0, size, Linux.PROT_READ, Linux.MAP_SHARED);
            MemorySegment file = mapping.segment();
            SnapshotFormat.Header h = SnapshotFormat.decodeHeader(path, file.asSlice(0, SnapshotFormat.HEADER_SIZE).asByteBuffer(), size);
            if (h.manifestLength() > Integer.MAX_VALUE - 8) throw new SnapshotFormatException(path, "manifest of " + h.manifestLength() + " bytes is larger than gmem reads (2 GiB)");
            ByteBuffer m = file.asSlice(h.manifestOffset(), h.manifestLength()).asByteBuffer();
            Manifest manifest = SnapshotFormat.decodeManifest(path, m, h.manifestOffset(), h.manifestCrc());
            return new Snapshot(path, fd, mapping, manifest, size);
        } catch (Throwable e) {
            if (mapping != null) mapping.close();
            fd.closeQuietly();
            throw e;
        }
    }

    public Manifest manifest() {
        return manifest;
    }

    public long fileSize() {
        return fileSize;
    }

    @Override
    public Path path() {
        return path;
    }

    @Override
    public String format() {
        return "snapshot";
    }

    @Override
    public List<Region> regions() {
        return manifest.regions();
    }

    @Override
    public List<Chunk> chunks() {
        return manifest.chunks();
    }

    @Override
    public long[] accessOrder() {
        return manifest.accessOrder().clone();
    }

    @Override
    public long scratchBytes() {
        long max = 0;
        for (Region r : manifest.regions()) max = Math.max(max, manifest.windowPages(r.pageSize()) * r.pageSize());
        return max;
    }

    /** The stored bytes of chunk {@code index}, in the file mapping. */
    public MemorySegment stored(int index) {
        Chunk c = manifest.chunks().get(index);
        return mapping.segment().asSlice(c.offset(), c.storedLength());
    }

    @Override
    public ChunkData read(int index, MemorySegment scratch) throws IOException {
        Chunk c = manifest.chunks().get(index);
        long pageSize = manifest.regions().get(c.region()).pageSize();
        if (c.dataPages() == 0 || c.codec() == Codec.NONE) return new ChunkData(c, stored(index), true, pageSize);
        MemorySegment target = scratch.asSlice(0, c.rawLength());
        try {
            c.codec().decompress(stored(index), target);
        } catch (IllegalArgumentException e) {
            throw new SnapshotFormatException(path, where(index) + ": " + e.getMessage());
        }
        return new ChunkData(c, target, true, pageSize);
    }

    /** Checks chunk {@code index}'s stored bytes against its CRC32C. */
    @Override
    public void verifyChunk(int index) throws SnapshotFormatException {
        Chunk c = manifest.chunks().get(index);
        if (c.storedLength() == 0) return;
        CRC32C crc = new CRC32C();
        crc.update(stored(index).asByteBuffer());
        int actual = (int) crc.getValue();
        if (actual != c.crc32c()) {
            Region r = manifest.regions().get(c.region());
            throw new ChunkChecksumException(path, index, r.guestAddress() + c.firstPage() * r.pageSize(), where(index) + ": checksum mismatch: stored "
                    + SnapshotFormat.hex(c.crc32c()) + ", computed " + SnapshotFormat.hex(actual));
        }
    }

    @Override
    public void verify(int threads, LongConsumer progress) throws IOException {
        Parallel.forEach(threads, "gmem-verify", manifest.chunks().size(), i -> {
            verifyChunk(i);
            progress.accept(manifest.chunks().get(i).storedLength());
        });
    }

    /**
     * Checks everything {@link #verify} does, and that every compressed chunk decodes to its raw
     * length: all that can be checked without guest memory.
     */
    public void verifyDeep(int threads, LongConsumer progress) throws IOException {
        long scratchBytes = Math.max(4096, scratchBytes());
        try (Arena arena = Arena.ofShared()) {
            ThreadLocal<MemorySegment> scratch = ThreadLocal.withInitial(() -> arena.allocate(scratchBytes, 4096));
            Parallel.forEach(threads, "gmem-verify", manifest.chunks().size(), i -> {
                verifyChunk(i);
                Chunk c = manifest.chunks().get(i);
                if (c.codec() != Codec.NONE) read(i, scratch.get());
                progress.accept(c.storedLength());
            });
        }
    }

    /** "chunk 12 (region 0, guest 0xc00000, stored at offset 8392704)". */
    String where(int index) {
        Chunk c = manifest.chunks().get(index);
        Region r = manifest.regions().get(c.region());
        return "chunk " + index + " (region " + c.region() + ", guest 0x" + Long.toHexString(r.guestAddress() + c.firstPage() * r.pageSize())
                + ", stored at offset " + c.offset() + ")";
    }

    @Override
    public void close() throws IOException {
        mapping.close();
        fd.close();
    }
}
