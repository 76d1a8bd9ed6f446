package dev.gmem.restore;

import dev.gmem.fault.PageProvider;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A local {@link PageSource} (a gmem snapshot or a raw memory file) as a fault engine's page
 * provider: source offsets are the source's file offsets (regions laid end to end). The first
 * fetch from a chunk reads it whole and checks its checksum; later ones hand the engine the pages
 * in place (for its UFFDIO_COPY and write(), system calls that fail with EFAULT rather than fault
 * if the file was truncated), or take a compressed chunk decoded from a cache that every fetcher
 * shares ({@link DecodedChunks}): many sessions from one snapshot decode a chunk once while it
 * stays cached, and need no buffers of their own. A fetch completes before {@code fetch} returns.
 * Does not own the source.
 */
public final class SourcePages implements PageProvider {
    /**
     * Decoded chunks kept for every fetcher at once (each a scratch buffer of the source's, up to
     * 2 MiB): enough for a handful of sessions filling nearby chunks, a fixed cost whatever their number.
     */
    static final int CACHED_CHUNKS = 8;

    private final PageSource source;
    private final PageIndex index;
    private final List<Chunk> chunks;
    private final List<Region> regions;
    /** File offset of each chunk's first page, ascending; built on first use (by the prefetcher), off the path to ready. */
    private volatile long[] chunkStart;
    /** Chunks whose checksum has been checked, one bit each. */
    private final AtomicLongArray verified;

    private final long[] accessOrder;
    /** Decoded chunks, shared by every fetcher (every session of a handler): their buffers are the only ones. */
    private final DecodedChunks decoded;

    private volatile boolean closed;
    private Thread verifier;

    public SourcePages(PageSource source) {
        this.source = source;
        this.index = new PageIndex(source);
        this.chunks = source.chunks();
        this.regions = source.regions();
        this.verified = new AtomicLongArray((chunks.size() + 63) / 64);
        this.decoded = new DecodedChunks(source, CACHED_CHUNKS);
        this.accessOrder = Arrays.stream(source.accessOrder())
                .map(index::fileOffsetOfGuest)
                .filter(o -> o >= 0)
                .toArray();
    }

    public PageSource source() {
        return source;
    }

    /**
     * Starts a thread, gmem-verify, that checks chunks ahead of use, in the prefetcher's order (the
     * access order's chunks first, then all by address): pread into its own buffer, CRC32C, mark
     * verified. A fetch from a verified chunk then takes the pages in place, without the copy a
     * checking read needs, so the checksums run beside the population on another core. A chunk
     * whose check fails is left unmarked: the fetch that needs it checks it again and fails there,
     * as it would without this thread. It stops when every chunk is checked or on {@link #close}.
     */
    public SourcePages verifyAhead() {
        synchronized (this) {
            if (verifier != null || closed) return this;
            verifier = Thread.ofPlatform().name("gmem-verify").daemon().start(this::verifyAll);
        }
        return this;
    }

    private void verifyAll() {
        try {
            for (long o : accessOrder) {
                if (closed) return;
                PageIndex.Location at = index.atFileOffset(o);
                if (at != null && at.index() >= 0) verifyQuietly(at.index());
            }
            for (int i = 0; i < chunks.size() && !closed; i++) verifyQuietly(i);
        } catch (Throwable ignored) {
            // the fetch that needs the chunk checks it itself, and reports what went wrong
        }
    }

    private void verifyQuietly(int chunk) {
        if (isVerified(chunk) || chunks.get(chunk).dataPages() == 0) return;
        try {
            source.verifyChunk(chunk);
            markVerified(chunk);
        } catch (IOException failed) {
            // left unmarked: see verifyAhead
        }
    }

    @Override
    public long size() {
        return source.size();
    }

    @Override
    public long pageSize(long offset) {
        PageIndex.Location at = index.atFileOffset(offset);
        if (at == null) throw new IllegalArgumentException("offset " + offset + " is past the end of " + source.name());
        return at.region().pageSize();
    }

    @Override
    public PageKind kind(long offset) {
        PageIndex.Location at = index.atFileOffset(offset);
        return at == null ? PageKind.HOLE : at.kind();
    }

    @Override
    public int dataRun(long offset, int maxPages) {
        PageIndex.Location at = index.atFileOffset(offset);
        if (at == null || at.kind() != PageKind.DATA)
            throw new IllegalArgumentException("offset " + offset + " of " + source.name() + " is not a data page");
        int n = 1;
        while (n < maxPages && at.page() + n < at.chunk().pages() && at.chunk().kind(at.page() + n) == PageKind.DATA)
            n++;
        return n;
    }

    private long[] chunkStarts() {
        long[] starts = chunkStart;
        if (starts == null) {
            starts = new long[chunks.size()];
            for (int i = 0; i < chunks.size(); i++) {
                Chunk c = chunks.get(i);
                Region r = regions.get(c.region());
                starts[i] = r.fileOffset() + c.firstPage() * r.pageSize();
            }
            chunkStart = starts; // racing builders compute the same array
        }
        return starts;
    }

    @Override
    public long nextData(long offset) {
        long[] chunkStart = chunkStarts();
        int i = Arrays.binarySearch(chunkStart, offset);
        if (i < 0) i = Math.max(0, -i - 2); // the chunk that starts before offset may still hold it
        for (; i < chunks.size(); i++) {
            Chunk c = chunks.get(i);
            if (c.dataPages() == 0) continue;
            long page = regions.get(c.region()).pageSize();
            int from = (int) Math.max(0, Math.min(c.pages(), ceilDiv(offset - chunkStart[i], page)));
            for (int p = from; p < c.pages(); p++) {
                if (c.kind(p) == PageKind.DATA) return chunkStart[i] + p * page;
            }
        }
        return -1;
    }

    private static long ceilDiv(long a, long b) {
        return a <= 0 ? 0 : (a + b - 1) / b;
    }

    @Override
    public long[] accessOrder() {
        return accessOrder;
    }

    @Override
    public Fetcher fetcher() {
        return new LocalFetcher();
    }

    @Override
    public String describe() {
        return source.name();
    }

    /** Stops the verify-ahead thread and frees the decoded chunks; does not close the source, which belongs to the caller. */
    @Override
    public void close() {
        Thread t;
        synchronized (this) {
            closed = true;
            t = verifier;
        }
        if (t != null) {
            try {
                t.join(10_000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        decoded.close();
    }

    /** Chunks served from the shared cache of decoded chunks, and decoded into it, so far. */
    public long[] cacheHitsAndDecodes() {
        return decoded.hitsAndDecodes();
    }

    private boolean isVerified(int chunk) {
        return (verified.get(chunk >>> 6) & (1L << (chunk & 63))) != 0;
    }

    private void markVerified(int chunk) {
        verified.getAndAccumulate(chunk >>> 6, 1L << (chunk & 63), (a, b) -> a | b);
    }

    private final class LocalFetcher implements Fetcher {
        @Override
        public void fetch(long offset, int pages, long token, Delivery to) throws IOException {
            PageIndex.Location at = index.atFileOffset(offset);
            if (at == null || at.kind() != PageKind.DATA)
                throw new IllegalArgumentException("offset " + offset + " of " + source.name() + " is not a data page");
            int chunk = at.index();
            boolean verify = !isVerified(chunk);
            if (!verify) {
                ChunkData inPlace = source.readInPlace(chunk); // for the engine's COPY and write(): system calls only
                if (inPlace != null) {
                    to.deliver(token, offset, inPlace.run(at.page(), pages));
                    return;
                }
            }
            // the whole chunk, read once (its checksum checked the first time) into the shared cache
            DecodedChunks.Slot slot = decoded.acquire(
                    chunk, (c, scratch) -> verify ? source.readVerified(c, scratch) : source.read(c, scratch));
            try {
                markVerified(chunk); // a chunk in the cache was checked when it was decoded, or before
                to.deliver(token, offset, slot.data().run(at.page(), pages));
            } finally {
                decoded.release(slot);
            }
        }

        @Override
        public void close() {
            // the fetcher holds nothing of its own: its buffers are the shared cache's
        }
    }
}
