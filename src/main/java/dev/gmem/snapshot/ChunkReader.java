package dev.gmem.snapshot;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * One thread's reader of a {@link PageSource}: its own scratch buffer, and the last chunk it
 * decoded kept, since consecutive faults, batches and checks mostly hit the same chunk. Not for
 * sharing between threads; close it to free the scratch buffer.
 */
public final class ChunkReader implements AutoCloseable {
    private final PageSource source;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment scratch;
    /** For runs read alone (uncompressed chunks), so that the cached chunk stays. */
    private final MemorySegment runScratch;

    private int cached = -1;
    private ChunkData data;

    public ChunkReader(PageSource source) {
        this.source = source;
        this.scratch = arena.allocate(Math.max(4096, source.scratchBytes()), 4096);
        this.runScratch = arena.allocate(Math.max(4096, source.scratchBytes()), 4096);
    }

    /** The data of chunk {@code index}, decoded once while it stays the last one asked for. */
    public ChunkData chunk(int index) throws IOException {
        if (index != cached) {
            data = source.read(index, scratch);
            cached = index;
        }
        return data;
    }

    /** The data of chunk {@code index}, read once with its checksum checked, and kept as the last one asked for. */
    public ChunkData chunkVerified(int index) throws IOException {
        data = source.readVerified(index, scratch);
        cached = index;
        return data;
    }

    /**
     * The bytes of {@code pages} data pages of chunk {@code index} from window page {@code first}:
     * from the kept chunk when it is that one or is compressed (decoded whole, once), else those
     * pages alone read from the source.
     */
    public MemorySegment run(int index, int first, int pages) throws IOException {
        if (index == cached || source.chunks().get(index).codec() != Codec.NONE)
            return chunk(index).run(first, pages);
        return source.readRun(index, first, pages, runScratch);
    }

    /** The bytes of the page at {@code at}, which must be a data page. */
    public MemorySegment page(PageIndex.Location at) throws IOException {
        return run(at.index(), at.page(), 1);
    }

    @Override
    public void close() {
        arena.close();
    }
}
