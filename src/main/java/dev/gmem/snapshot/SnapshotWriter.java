package dev.gmem.snapshot;

import dev.gmem.linux.Fd;
import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;
import java.util.zip.CRC32C;

/**
 * Writes gmem snapshots and raw memory files from any {@link PageSource}: pack (raw to snapshot,
 * or a snapshot again with another codec) and unpack (snapshot to a sparse raw file). Output goes
 * to a {@link OutputFile}: it appears under its name only when complete.
 */
public final class SnapshotWriter {
    private static final long ALIGN = 4096;

    private SnapshotWriter() {}

    /** What a pack wrote. */
    public record PackResult(Path output, long fileSize, Manifest manifest) {}

    /**
     * Packs {@code source} into a snapshot at {@code output}: zero pages and holes are recorded in
     * the chunk maps and not stored; data chunks are stored with {@code codec} where that makes
     * them smaller (else uncompressed, page-aligned), each with its CRC32C. {@code accessOrder}
     * (guest physical addresses, may be empty) is recorded for lazy restore. {@code progress}
     * receives guest bytes done.
     */
    public static PackResult pack(
            PageSource source, Path output, Codec codec, long[] accessOrder, LongConsumer progress) throws IOException {
        return pack(source, output, codec, accessOrder, new java.util.LinkedHashMap<>(), progress);
    }

    /**
     * Packs as {@link #pack(PageSource, Path, Codec, long[], LongConsumer)} does, and stores
     * {@code attachments} (names to bytes, in this order) after the chunks, each under its CRC32C: the
     * snapshot is then of format version 2.
     */
    public static PackResult pack(
            PageSource source,
            Path output,
            Codec codec,
            long[] accessOrder,
            java.util.SequencedMap<String, byte[]> attachments,
            LongConsumer progress)
            throws IOException {
        attachments.keySet().forEach(Attachment::checkName);
        for (var e : attachments.entrySet()) {
            if (e.getValue().length > Attachment.MAX_BYTES)
                throw new IllegalArgumentException("attachment '" + e.getKey() + "' is more than 1 GiB");
        }
        List<Region> regions = source.regions();
        List<Chunk> in = source.chunks();
        List<Chunk> out = new ArrayList<>(in.size());
        long window = 0;
        for (Region r : regions)
            window = Math.max(window, Math.max(1, SnapshotFormat.CHUNK_BYTES / r.pageSize()) * r.pageSize());
        try (OutputFile file = OutputFile.create(output, OutputFile.Mode.REPLACE, 0644, source.path());
                Arena arena = Arena.ofConfined()) {
            Fd fd = file.fd();
            MemorySegment scratch = arena.allocate(Math.max(window, source.scratchBytes()), ALIGN);
            MemorySegment staging = arena.allocate(window, ALIGN);
            MemorySegment compressed = codec == Codec.NONE ? null : arena.allocate(codec.bound(window), ALIGN);
            CRC32C crc = new CRC32C();
            long pos = SnapshotFormat.HEADER_SIZE;
            long previousEnd = 0; // file offsets of chunks only grow: regions lie end to end, chunks in order
            for (int i = 0; i < in.size(); i++) {
                Chunk c = in.get(i);
                Region r = regions.get(c.region());
                long start = r.fileOffset() + c.firstPage() * r.pageSize();
                progress.accept(start - previousEnd); // the holes before this chunk
                previousEnd = start + c.pages() * r.pageSize();
                if (c.dataPages() == 0) {
                    out.add(new Chunk(
                            c.region(), c.firstPage(), c.pages(), c.dataMap(), c.zeroMap(), Codec.NONE, 0, 0, 0, 0));
                    progress.accept(c.pages() * r.pageSize());
                    continue;
                }
                // in place, the data pages are copied into staging in Java (a truncated file makes that throw, not
                // crash);
                // only gmem's own buffers reach the compressor and the checksum
                ChunkData inPlace = source.readInPlace(i);
                ChunkData data = inPlace != null ? inPlace : source.read(i, scratch);
                MemorySegment packed = inPlace != null ? null : data.packedOrNull();
                if (packed == null) {
                    long[] at = {0};
                    try {
                        c.forEachDataRun((first, n) -> {
                            MemorySegment run = data.run(first, n);
                            MemorySegment.copy(run, 0, staging, at[0], run.byteSize());
                            at[0] += run.byteSize();
                        });
                    } catch (InternalError e) {
                        source.checkUnchanged();
                        throw new SnapshotFormatException(
                                source.path(),
                                "could not be read at offset " + start
                                        + " (a memory fault while copying it: an I/O error" + " of its medium?)",
                                e);
                    }
                    packed = staging.asSlice(0, at[0]);
                }
                MemorySegment stored = packed;
                Codec used = Codec.NONE;
                if (codec != Codec.NONE) {
                    int n = codec.compress(packed, compressed);
                    if (n < packed.byteSize()) {
                        stored = compressed.asSlice(0, n);
                        used = codec;
                    }
                }
                if (used == Codec.NONE) pos = (pos + ALIGN - 1) / ALIGN * ALIGN;
                crc.reset();
                crc.update(stored.asByteBuffer());
                fd.pwriteFully(stored, pos);
                out.add(new Chunk(
                        c.region(),
                        c.firstPage(),
                        c.pages(),
                        c.dataMap(),
                        c.zeroMap(),
                        used,
                        pos,
                        (int) stored.byteSize(),
                        (int) packed.byteSize(),
                        (int) crc.getValue()));
                pos += stored.byteSize();
                progress.accept(c.pages() * r.pageSize());
            }
            progress.accept(source.size() - previousEnd);
            List<Attachment> stored = new ArrayList<>();
            for (var e : attachments.entrySet()) {
                byte[] bytes = e.getValue();
                if (bytes.length > 0) {
                    MemorySegment piece = arena.allocate(bytes.length);
                    MemorySegment.copy(MemorySegment.ofArray(bytes), 0, piece, 0, bytes.length);
                    fd.pwriteFully(piece, pos);
                }
                crc.reset();
                crc.update(bytes);
                stored.add(new Attachment(e.getKey(), pos, bytes.length, (int) crc.getValue()));
                pos += bytes.length;
            }
            Manifest manifest = new Manifest(
                    SnapshotFormat.CHUNK_BYTES,
                    codec,
                    regions,
                    List.copyOf(out),
                    accessOrder.clone(),
                    List.copyOf(stored));
            byte[] m = SnapshotFormat.encodeManifest(manifest);
            MemorySegment mseg = arena.allocate(m.length);
            MemorySegment.copy(MemorySegment.ofArray(m), 0, mseg, 0, m.length);
            fd.pwriteFully(mseg, pos);
            crc.reset();
            crc.update(m);
            MemorySegment header = MemorySegment.ofBuffer(SnapshotFormat.encodeHeader(
                    SnapshotFormat.versionOf(manifest), pos, m.length, (int) crc.getValue()));
            fd.pwriteFully(header, 0);
            file.commit();
            return new PackResult(output, pos + m.length, manifest);
        }
    }

    /**
     * Writes {@code source} as a raw memory file at {@code output}: regions end to end, data pages
     * in place, zero pages and holes left as holes (the file is sparse; its bytes equal the
     * original's). Checks every chunk's checksum first, so a corrupt snapshot writes nothing.
     */
    public static long unpack(PageSource source, Path output, int threads, LongConsumer progress) throws IOException {
        source.verify(threads, b -> {});
        List<Chunk> chunks = source.chunks();
        List<Region> regions = source.regions();
        long size = source.size();
        try (OutputFile file = OutputFile.create(output, OutputFile.Mode.REPLACE, 0644, source.path());
                Arena arena = Arena.ofShared()) {
            Fd fd = file.fd();
            dev.gmem.util.HostLimitException.truncate(fd, size);
            long scratchBytes = Math.max(1, source.scratchBytes());
            ThreadLocal<MemorySegment> mine = ThreadLocal.withInitial(() -> arena.allocate(scratchBytes, ALIGN));
            java.util.concurrent.atomic.AtomicLong written = new java.util.concurrent.atomic.AtomicLong();
            dev.gmem.util.Parallel.forEach(threads, "gmem-unpack", chunks.size(), i -> {
                Chunk c = chunks.get(i);
                Region r = regions.get(c.region());
                if (c.dataPages() > 0) {
                    ChunkData data = source.read(i, mine.get());
                    long base = r.fileOffset() + c.firstPage() * r.pageSize();
                    c.forEachDataRun((first, n) -> fd.pwriteFully(data.run(first, n), base + first * r.pageSize()));
                    written.addAndGet(c.rawLength());
                }
                progress.accept(c.pages() * r.pageSize());
            });
            file.commit();
            return written.get();
        }
    }
}
