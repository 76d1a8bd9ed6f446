package dev.gmem.restore;

import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.PageSource;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A bounded cache of decoded chunks of one {@link PageSource}, shared by every fetcher of a {@link
 * SourcePages}: the sessions that restore many VMs from one snapshot decode each chunk once while
 * it stays cached, and the memory for decoding is this cache's alone, however many fetchers there
 * are. A slot is a scratch buffer of the source's size, allocated on first use.
 *
 * <p>{@link #acquire} pins the slot it returns (its bytes stay valid and unchanged) until {@link
 * #release}; the least recently used unpinned slot is reused for a chunk not cached. A chunk being
 * decoded is waited for by the others that want it; a failed decode leaves its slot empty and
 * throws, and the next fetch of that chunk tries again (and fails the same way, for a bad chunk).
 * All state is guarded by this object's monitor; decoding happens outside it.
 */
final class DecodedChunks implements AutoCloseable {
    /** One slot's state. {@code chunk} is -1 when empty. */
    static final class Slot {
        private final int number;
        private MemorySegment buffer;
        private int chunk = -1;
        private boolean loading;
        private int pins;
        private long lastUse;
        private ChunkData data;

        private Slot(int number) {
            this.number = number;
        }

        /** The decoded chunk; valid while pinned. */
        ChunkData data() {
            return data;
        }
    }

    /** How a missing chunk is decoded into a slot's buffer. */
    @FunctionalInterface
    interface Decoder {
        ChunkData decode(int chunk, MemorySegment scratch) throws IOException;
    }

    private final PageSource source;
    private final Slot[] slots;
    /** Automatic: the slots go with the cache, whoever forgets to close it; close refuses further use. */
    private final Arena arena = Arena.ofAuto();

    private long clock;
    private long hits;
    private long decodes;
    private boolean closed;

    DecodedChunks(PageSource source, int slots) {
        if (slots < 1) throw new IllegalArgumentException("at least one slot");
        this.source = source;
        this.slots = new Slot[slots];
        for (int i = 0; i < slots; i++) this.slots[i] = new Slot(i);
    }

    /**
     * The slot that holds chunk {@code chunk} decoded, pinned; decoded now with {@code decoder} if
     * it is not cached. Release it with {@link #release}.
     */
    Slot acquire(int chunk, Decoder decoder) throws IOException {
        Slot s;
        synchronized (this) {
            while (true) {
                if (closed) throw new IllegalStateException("the page provider is closed");
                Slot cached = find(chunk);
                if (cached != null && !cached.loading) {
                    cached.pins++;
                    cached.lastUse = ++clock;
                    hits++;
                    return cached;
                }
                if (cached == null) {
                    s = victim();
                    if (s != null) {
                        // before the slot changes: a failed allocation leaves it as it was
                        if (s.buffer == null) s.buffer = arena.allocate(Math.max(4096, source.scratchBytes()), 4096);
                        break;
                    }
                }
                await(); // being decoded by another fetcher, or every slot pinned
            }
            s.chunk = chunk;
            s.loading = true;
            s.pins = 1;
            s.data = null;
            s.lastUse = ++clock;
            decodes++;
        }
        ChunkData d = null;
        try {
            d = decoder.decode(chunk, s.buffer);
        } finally {
            synchronized (this) {
                s.loading = false;
                if (d == null) { // failed: empty the slot, for the next fetch to try again
                    s.chunk = -1;
                    s.pins = 0;
                } else {
                    s.data = d;
                }
                notifyAll();
            }
        }
        return s;
    }

    /** Unpins a slot from {@link #acquire}. */
    synchronized void release(Slot s) {
        if (s.pins <= 0) throw new IllegalStateException("slot " + s.number + " is not pinned");
        if (--s.pins == 0) notifyAll();
    }

    private Slot find(int chunk) {
        for (Slot s : slots) if (s.chunk == chunk) return s;
        return null;
    }

    /** The least recently used unpinned slot, empty ones first; null if every slot is pinned. */
    private Slot victim() {
        Slot best = null;
        for (Slot s : slots) {
            if (s.pins > 0 || s.loading) continue;
            if (best == null || s.lastUse < best.lastUse) best = s;
        }
        return best;
    }

    private void await() throws IOException {
        try {
            wait(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while waiting for a decoded chunk");
        }
    }

    /** Chunks served from the cache, and decoded into it, so far. */
    synchronized long[] hitsAndDecodes() {
        return new long[] {hits, decodes};
    }

    /** Refuses further use; the slots' memory goes when the cache is no longer reachable (a fetch may still read one). */
    @Override
    public synchronized void close() {
        closed = true;
        notifyAll();
    }
}
