package dev.gmem.snapshot;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Guest memory pages to restore, chunk by chunk: a gmem snapshot ({@link Snapshot}) or a raw VMM
 * memory file ({@link RawImage}). Opening one validates everything that can be checked without
 * reading the data; {@link #verify} checks the data itself. Safe for use by many threads, each
 * with its own scratch buffer.
 */
public interface PageSource extends AutoCloseable {
    /** The local file the pages are read from, or null for a source that is none (a store, a peer). */
    Path path();

    /** Where the pages come from, for messages: a file's path, an {@code s3://} URL, a peer's address. */
    default String name() {
        return String.valueOf(path());
    }

    /** Whether reads cross a network (a store, a peer: no local file), so that several at once hide their round trips. */
    default boolean remote() {
        return path() == null;
    }

    /** "snapshot" or "raw". */
    String format();

    List<Region> regions();

    /** Every window that has data or zero pages, in (region, page) order. */
    List<Chunk> chunks();

    /** Guest pages in the order the guest touched them, as guest physical addresses; empty when none was recorded. */
    long[] accessOrder();

    /** Guest bytes: all regions laid end to end. */
    default long size() {
        return Region.totalSize(regions());
    }

    default PageCounts counts() {
        return PageCounts.of(regions(), chunks());
    }

    /** The bytes a {@link #read} scratch buffer needs. */
    long scratchBytes();

    /**
     * The data of chunk {@code index}, read (with pread: a source truncated meanwhile gives a
     * {@link SourceChangedException}, never a SIGBUS) and decoded into {@code scratch}, at least
     * {@link #scratchBytes()}, native. The result is valid until {@code scratch} is reused.
     *
     * @throws SnapshotFormatException if the chunk's data cannot be decoded to its raw length
     */
    ChunkData read(int index, MemorySegment scratch) throws IOException;

    /**
     * Checks every chunk's stored data against its checksum on {@code threads} threads, reporting
     * bytes checked to {@code progress}. A raw file has no checksums: nothing to do.
     *
     * @throws SnapshotFormatException naming the first bad chunk, with "checksum mismatch"
     */
    void verify(int threads, LongConsumer progress) throws IOException;

    /** Checks one chunk's stored data against its checksum (nothing to check for a raw file). */
    default void verifyChunk(int index) throws IOException {}

    /**
     * The bytes of {@code pages} data pages of chunk {@code index} from window page
     * {@code firstPage}, in gmem's buffer {@code scratch} (at least {@link #scratchBytes()}): only
     * those pages are read where the chunk is not compressed. Safe for any use.
     */
    default MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch) throws IOException {
        return read(index, scratch).run(firstPage, pages);
    }

    /**
     * The chunk's data straight from the file's read-only mapping, without a copy, where the source
     * has one and the chunk is stored uncompressed; null otherwise. <b>Only for system calls</b>
     * (pwrite, UFFDIO_COPY), which fail with EFAULT if the file was truncated, and for Java copies
     * ({@code MemorySegment.copy}), which then throw InternalError: a caller that meets either asks
     * {@link #checkUnchanged}. Never hand these bytes to native code or to a checksum: a truncated
     * file would take the JVM down with SIGBUS there.
     */
    default ChunkData readInPlace(int index) {
        return null;
    }

    /** Fails with a {@link SourceChangedException} if the file's size is not what it was on opening. */
    default void checkUnchanged() throws IOException {}

    /** {@link #read} of a chunk whose checksum is checked first, reading it only once where the source can. */
    default ChunkData readVerified(int index, MemorySegment scratch) throws IOException {
        verifyChunk(index);
        return read(index, scratch);
    }

    @Override
    void close() throws IOException;
}
