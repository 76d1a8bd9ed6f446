package dev.gmem.snapshot;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.zip.CRC32C;

/**
 * A gmem snapshot file, open for reading. {@link #open} checks the header and the whole manifest
 * (see {@link SnapshotFormat}); {@link #verify} checks every chunk's data against its CRC32C.
 * Its data is read with pread into gmem's own buffers: a file truncated under gmem gives a short
 * read, reported as a {@link SourceChangedException}, rather than a SIGBUS in the JVM. A read-only
 * mapping serves {@link #readInPlace} alone, whose bytes go only to system calls and Java copies
 * (the packer never
 * rewrites a snapshot in place: it writes a new file and renames it).
 */
public final class Snapshot implements PageSource {
    private final Path path;
    private final Fd fd;
    /** Read-only, shared: for {@link #readInPlace} only. */
    private final Mapping mapping;

    private final Manifest manifest;
    private final long fileSize;
    private final int formatVersion;
    /** The largest stored chunk, rounded up to a page: the staging part of a scratch buffer. */
    private final long maxStored;
    /** Each thread's buffer for checking a chunk's checksum; freed with the thread. */
    private final ThreadLocal<MemorySegment> checkBuffers;

    private Snapshot(Path path, Fd fd, Mapping mapping, Manifest manifest, long fileSize, int formatVersion) {
        this.formatVersion = formatVersion;
        this.path = path;
        this.fd = fd;
        this.mapping = mapping;
        this.manifest = manifest;
        this.fileSize = fileSize;
        long max = 0;
        for (Chunk c : manifest.chunks()) max = Math.max(max, c.storedLength());
        this.maxStored = (max + 4095) / 4096 * 4096;
        this.checkBuffers = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(Math.max(4096, maxStored), 4096));
    }

    /** Opens and validates {@code path}; nothing of its data is trusted until {@link #verify} (or a per-chunk {@link #verifyChunk}). */
    public static Snapshot open(Path path) throws IOException {
        PageSources.checkInput(path);
        Fd fd = Fd.open(path, Linux.O_RDONLY | Linux.O_CLOEXEC, 0);
        try (Arena arena = Arena.ofConfined()) {
            long size = fd.lseek(0, Linux.SEEK_END);
            if (size < SnapshotFormat.HEADER_SIZE) {
                throw new SnapshotFormatException(
                        path,
                        "truncated: " + size + " bytes, shorter than the " + SnapshotFormat.HEADER_SIZE
                                + "-byte snapshot header");
            }
            MemorySegment header = arena.allocate(SnapshotFormat.HEADER_SIZE, 8);
            if (fd.preadFully(header, 0) != header.byteSize())
                throw new SourceChangedException(path, "its header could not be read whole");
            SnapshotFormat.Header h = SnapshotFormat.decodeHeader(path, header.asByteBuffer(), size);
            if (h.manifestLength() > Integer.MAX_VALUE - 8)
                throw new SnapshotFormatException(
                        path, "manifest of " + h.manifestLength() + " bytes is larger than gmem reads (2 GiB)");
            ByteBuffer m = ByteBuffer.allocate((int) h.manifestLength());
            MemorySegment bounce = arena.allocate(Math.min(1 << 20, Math.max(1, h.manifestLength())), 8);
            for (long at = 0; at < h.manifestLength(); at += bounce.byteSize()) {
                MemorySegment piece = bounce.asSlice(0, Math.min(bounce.byteSize(), h.manifestLength() - at));
                if (fd.preadFully(piece, h.manifestOffset() + at) != piece.byteSize()) {
                    throw new SourceChangedException(
                            path, "its manifest at offset " + h.manifestOffset() + " could not be read whole");
                }
                MemorySegment.copy(piece, 0, MemorySegment.ofBuffer(m), at, piece.byteSize());
            }
            Manifest manifest =
                    SnapshotFormat.decodeManifest(path, m, h.manifestOffset(), h.manifestCrc(), h.version());
            return new Snapshot(
                    path, fd, Mapping.map(fd, 0, size, Linux.PROT_READ, Linux.MAP_SHARED), manifest, size, h.version());
        } catch (Throwable e) {
            fd.closeQuietly();
            throw e;
        }
    }

    public Manifest manifest() {
        return manifest;
    }

    /** The largest attachment {@link #attachment} reads. */
    public static final long MAX_ATTACHMENT = Attachment.MAX_BYTES;

    /** Every attachment's bytes, in file order, each checked against its CRC32C. */
    public java.util.SequencedMap<String, byte[]> attachments() throws IOException {
        var all = new java.util.LinkedHashMap<String, byte[]>();
        for (Attachment a : manifest.attachments()) all.put(a.name(), attachment(a.name()));
        return all;
    }

    /**
     * The bytes of the attachment called {@code name}, checked against its CRC32C, or null when the
     * snapshot has none of that name.
     */
    public byte[] attachment(String name) throws IOException {
        Attachment a = manifest.attachment(name);
        if (a == null) return null;
        String what = "attachment '" + name + "' at offset " + a.offset();
        if (a.length() > MAX_ATTACHMENT)
            throw new SnapshotFormatException(
                    path, what + " is " + a.length() + " bytes, more than gmem reads (" + MAX_ATTACHMENT + ")");
        byte[] bytes = new byte[(int) a.length()];
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(Math.max(1, a.length()), 8);
            if (fd.preadFully(buffer, a.offset()) != buffer.byteSize() && a.length() > 0)
                throw new SourceChangedException(path, "its " + what + " could not be read whole");
            MemorySegment.copy(buffer, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, bytes, 0, bytes.length);
        }
        CRC32C crc = new CRC32C();
        crc.update(bytes);
        if ((int) crc.getValue() != a.crc32c())
            throw new SnapshotFormatException(
                    path,
                    what + ": checksum mismatch: stored " + SnapshotFormat.hex(a.crc32c()) + ", computed "
                            + SnapshotFormat.hex((int) crc.getValue()));
        return bytes;
    }

    /** The format version its header says. */
    public int formatVersion() {
        return formatVersion;
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

    /** A window's raw bytes (where a compressed chunk decodes) and, after them, the staging area its stored bytes are read into. */
    @Override
    public long scratchBytes() {
        return rawBytes() + maxStored;
    }

    private long rawBytes() {
        long max = 0;
        for (Region r : manifest.regions()) max = Math.max(max, manifest.windowPages(r.pageSize()) * r.pageSize());
        return (max + 4095) / 4096 * 4096;
    }

    /** Reads the stored bytes of chunk {@code index} into the start of {@code into}. */
    private MemorySegment readStored(int index, MemorySegment into) throws IOException {
        Chunk c = manifest.chunks().get(index);
        MemorySegment dst = into.asSlice(0, c.storedLength());
        long n = fd.preadFully(dst, c.offset());
        if (n != c.storedLength()) {
            throw new SourceChangedException(
                    path,
                    where(index) + " ends at offset " + (c.offset() + c.storedLength()) + ", but the file now ends at "
                            + (c.offset() + n));
        }
        return dst;
    }

    @Override
    public ChunkData read(int index, MemorySegment scratch) throws IOException {
        return read(index, scratch, false);
    }

    @Override
    public MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch) throws IOException {
        Chunk c = manifest.chunks().get(index);
        if (c.codec() != Codec.NONE) return read(index, scratch).run(firstPage, pages);
        long pageSize = manifest.regions().get(c.region()).pageSize();
        MemorySegment dst = scratch.asSlice(0, pages * pageSize);
        long at = c.offset() + c.rank(firstPage) * pageSize;
        long n = fd.preadFully(dst, at);
        if (n != dst.byteSize())
            throw new SourceChangedException(
                    path,
                    where(index) + " reaches offset " + (at + dst.byteSize()) + ", but the file now ends at "
                            + (at + n));
        return dst;
    }

    @Override
    public ChunkData readInPlace(int index) {
        Chunk c = manifest.chunks().get(index);
        if (c.storedLength() == 0 || c.codec() != Codec.NONE) return null;
        return new ChunkData(
                c,
                mapping.segment().asSlice(c.offset(), c.storedLength()),
                true,
                manifest.regions().get(c.region()).pageSize());
    }

    @Override
    public void checkUnchanged() throws IOException {
        long now = fd.lseek(0, Linux.SEEK_END);
        if (now != fileSize)
            throw new SourceChangedException(
                    path, "it was " + fileSize + " bytes when opened and is " + now + " bytes now");
    }

    /** Reads chunk {@code index} once, checking its stored bytes against the checksum before decoding them. */
    @Override
    public ChunkData readVerified(int index, MemorySegment scratch) throws IOException {
        return read(index, scratch, true);
    }

    private ChunkData read(int index, MemorySegment scratch, boolean verify) throws IOException {
        Chunk c = manifest.chunks().get(index);
        long pageSize = manifest.regions().get(c.region()).pageSize();
        if (c.storedLength() == 0) return new ChunkData(c, scratch.asSlice(0, 0), true, pageSize);
        if (c.codec() == Codec.NONE) {
            MemorySegment stored = readStored(index, scratch);
            if (verify) check(index, stored);
            return new ChunkData(c, stored, true, pageSize);
        }
        MemorySegment stored = readStored(index, scratch.asSlice(rawBytes()));
        if (verify) check(index, stored);
        MemorySegment target = scratch.asSlice(0, c.rawLength());
        try {
            c.codec().decompress(stored, target);
        } catch (IllegalArgumentException e) {
            throw new SnapshotFormatException(path, where(index) + ": " + e.getMessage());
        }
        return new ChunkData(c, target, true, pageSize);
    }

    /** Checks chunk {@code index}'s stored bytes against its CRC32C. */
    @Override
    public void verifyChunk(int index) throws IOException {
        Chunk c = manifest.chunks().get(index);
        if (c.storedLength() == 0) return;
        check(index, readStored(index, checkBuffers.get()));
    }

    private void check(int index, MemorySegment stored) throws ChunkChecksumException {
        Chunk c = manifest.chunks().get(index);
        CRC32C crc = new CRC32C();
        crc.update(stored.asByteBuffer());
        int actual = (int) crc.getValue();
        if (actual != c.crc32c()) {
            Region r = manifest.regions().get(c.region());
            throw new ChunkChecksumException(
                    path,
                    index,
                    r.guestAddress() + c.firstPage() * r.pageSize(),
                    where(index) + ": checksum mismatch: stored " + SnapshotFormat.hex(c.crc32c()) + ", computed "
                            + SnapshotFormat.hex(actual));
        }
    }

    /** Checks every chunk's data and every attachment against its CRC32C. */
    @Override
    public void verify(int threads, LongConsumer progress) throws IOException {
        attachments();
        Parallel.forEach(threads, "gmem-verify", manifest.chunks().size(), i -> {
            verifyChunk(i);
            progress.accept(manifest.chunks().get(i).storedLength());
        });
    }

    /**
     * Checks everything {@link #verify} does (attachments included), and that every compressed chunk decodes to its raw
     * length: all that can be checked without guest memory.
     */
    public void verifyDeep(int threads, LongConsumer progress) throws IOException {
        attachments();
        long scratchBytes = Math.max(4096, scratchBytes());
        try (Arena arena = Arena.ofShared()) {
            ThreadLocal<MemorySegment> scratch = ThreadLocal.withInitial(() -> arena.allocate(scratchBytes, 4096));
            Parallel.forEach(threads, "gmem-verify", manifest.chunks().size(), i -> {
                Chunk c = manifest.chunks().get(i);
                if (c.codec() != Codec.NONE) readVerified(i, scratch.get());
                else verifyChunk(i);
                progress.accept(c.storedLength());
            });
        }
    }

    /** "chunk 12 (region 0, guest 0xc00000, stored at offset 8392704)". */
    String where(int index) {
        Chunk c = manifest.chunks().get(index);
        Region r = manifest.regions().get(c.region());
        return "chunk " + index + " (region " + c.region() + ", guest 0x"
                + Long.toHexString(r.guestAddress() + c.firstPage() * r.pageSize()) + ", stored at offset " + c.offset()
                + ")";
    }

    @Override
    public void close() throws IOException {
        mapping.close();
        fd.close();
    }
}
