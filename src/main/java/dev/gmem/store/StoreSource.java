package dev.gmem.store;

import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.LongConsumer;

/**
 * A snapshot in a store as a {@link PageSource}, so every reader takes it: eager and lazy restore,
 * the Firecracker handler, the page server. Opening fetches the manifest alone (one GET); a chunk
 * is read by fetching its layers' objects (through the cache, in parallel, each checked against
 * its size and CRC32C before use) and taking each data page from its layer. A read of chunk {@code i}
 * right after chunk {@code i - 1} starts fetching the objects of the next {@value #READ_AHEAD}
 * chunks into the cache, several GETs in flight, so a sequential reader (an eager restore, a
 * prefetch) rarely waits; random reads (faults) fetch only what they need.
 */
public final class StoreSource implements PageSource {
    static final int READ_AHEAD = 8;

    private final Store store;
    private final S3Location location;
    private final StoreManifest manifest;
    private final List<Chunk> chunks;
    /** Fetches a reader waits for. */
    private final ExecutorService fetchers;
    /** Fetches ahead of a reader in order: apart, so that they never queue before a fault's. */
    private final ExecutorService readers;
    /** The chunks read ahead so far (every one up to this index was asked for). */
    private final java.util.concurrent.atomic.AtomicInteger aheadUpTo =
            new java.util.concurrent.atomic.AtomicInteger(-1);
    /** Whether closing this closes the store too (a source a command opened for itself). */
    private boolean ownsStore;

    private final ConcurrentHashMap<String, CompletableFuture<byte[]>> inFlight = new ConcurrentHashMap<>();
    private final ThreadLocal<MemorySegment> staging = new ThreadLocal<>();
    private final ThreadLocal<MemorySegment> raw = new ThreadLocal<>();
    /** Decoded objects recently used, for the faults that follow one another in a window: 64 MiB at most. */
    private final java.util.LinkedHashMap<String, byte[]> decoded = new java.util.LinkedHashMap<>(64, 0.75f, true);

    private long decodedBytes;
    private static final long DECODED_MAX = 64L << 20;

    /** The SHA-256 of the manifest's bytes: what this snapshot is, whatever its name says later. */
    private final String identity;

    private StoreSource(Store store, S3Location location, StoreManifest manifest, String identity) {
        this.store = store;
        this.location = location;
        this.manifest = manifest;
        this.identity = identity;
        this.chunks = manifest.asChunks();
        this.fetchers = Executors.newFixedThreadPool(
                8, Thread.ofPlatform().daemon().name("gmem-store-fetch-", 0).factory());
        this.readers = Executors.newFixedThreadPool(
                8, Thread.ofPlatform().daemon().name("gmem-store-ahead-", 0).factory());
        // started here, by the opening thread: a pool thread started later by whichever thread first
        // submits work would take that thread's nice value, and a post-copy push runs at nice 10
        ((java.util.concurrent.ThreadPoolExecutor) fetchers).prestartAllCoreThreads();
        ((java.util.concurrent.ThreadPoolExecutor) readers).prestartAllCoreThreads();
    }

    /** Opens {@code location}'s snapshot: its manifest is fetched and checked, nothing else. */
    public static StoreSource open(Store store, S3Location location) throws StoreException {
        byte[] bytes = store.manifestBytes(location);
        return new StoreSource(
                store,
                location,
                StoreManifest.decode(location.toString(), bytes),
                java.util.HexFormat.of().formatHex(StorePush.sha256().digest(bytes)));
    }

    /** The SHA-256 of the manifest: a re-push under the same name has another. */
    public String identity() {
        return identity;
    }

    /** As {@link #open}, the source taking {@code store} over: it is closed with the source (or now, if opening fails). */
    public static StoreSource openOwning(Store store, S3Location location) throws StoreException {
        try {
            StoreSource s = open(store, location);
            s.ownsStore = true;
            return s;
        } catch (StoreException | RuntimeException e) {
            store.close();
            throw e;
        }
    }

    public StoreManifest manifest() {
        return manifest;
    }

    public Store store() {
        return store;
    }

    /** None: the pages are in a store. */
    @Override
    public Path path() {
        return null;
    }

    @Override
    public String name() {
        return location.toString();
    }

    @Override
    public String format() {
        return "store";
    }

    @Override
    public List<Region> regions() {
        return manifest.regions();
    }

    @Override
    public List<Chunk> chunks() {
        return chunks;
    }

    @Override
    public long[] accessOrder() {
        return manifest.accessOrder().clone();
    }

    @Override
    public long scratchBytes() {
        long max = 0;
        for (Region r : manifest.regions())
            max = Math.max(max, Math.max(1, manifest.windowBytes() / r.pageSize()) * r.pageSize());
        return max;
    }

    /** Fetches an object on a fetcher thread. */
    private CompletableFuture<byte[]> fetchAsync(StoreManifest.ObjectRef ref) {
        return fetchAsync(ref, fetchers);
    }

    private CompletableFuture<byte[]> fetchAsync(StoreManifest.ObjectRef ref, ExecutorService on) {
        return CompletableFuture.supplyAsync(
                () -> {
                    try {
                        return store.fetch(ref);
                    } catch (StoreException e) {
                        throw new java.util.concurrent.CompletionException(e);
                    }
                },
                on);
    }

    /**
     * An object's stored bytes: one fetch at a time for each object, however many readers want it.
     * A reader that finds no fetch under way fetches on its own thread (no hand-off to wait for).
     */
    private byte[] object(StoreManifest.ObjectRef ref) throws StoreException {
        CompletableFuture<byte[]> mine = new CompletableFuture<>();
        CompletableFuture<byte[]> f = inFlight.putIfAbsent(ref.hex(), mine);
        if (f == null) {
            try {
                byte[] b = store.fetch(ref);
                mine.complete(b);
                return b;
            } catch (Throwable t) { // whatever ends the fetch ends every wait for it too
                mine.completeExceptionally(t);
                throw t;
            } finally {
                inFlight.remove(ref.hex(), mine);
            }
        }
        try {
            return f.join();
        } catch (java.util.concurrent.CompletionException e) {
            if (e.getCause() instanceof StoreException s) throw new StoreException(s.getMessage(), s);
            throw new StoreException(location + ": " + e.getCause(), e.getCause());
        } finally {
            inFlight.remove(ref.hex(), f);
        }
    }

    /** The chunk read last: read-ahead follows a reader that goes in order, never one that jumps about. */
    private final java.util.concurrent.atomic.AtomicInteger lastRead =
            new java.util.concurrent.atomic.AtomicInteger(-2);

    private void readAhead(int index) {
        int last = lastRead.getAndSet(index);
        if (index != last + 1) return;
        if (store.cache() == null) return; // without a cache, read-ahead would have nowhere to keep what it fetched
        int end = Math.min(chunks.size(), index + 1 + READ_AHEAD);
        int before = aheadUpTo.getAndUpdate(x -> Math.max(x, end - 1));
        for (int i = Math.max(index + 1, before + 1); i < end; i++) { // each chunk asked for once
            for (StoreManifest.Layer l : manifest.chunks().get(i).layers()) {
                StoreManifest.ObjectRef ref = l.object();
                CompletableFuture<byte[]> f = inFlight.computeIfAbsent(ref.hex(), h -> fetchAsync(ref, readers));
                f.whenComplete((b, e) -> inFlight.remove(ref.hex(), f));
            }
        }
    }

    /** An object's pages, decoded: from memory when it was used lately, else fetched (checked) and decoded. */
    private byte[] decodedObject(StoreManifest.ObjectRef ref) throws StoreException {
        synchronized (decoded) {
            byte[] d = decoded.get(ref.hex());
            if (d != null) return d;
        }
        byte[] stored = object(ref);
        MemorySegment seg =
                Store.decode(ref, stored, Store.buffer(staging, stored.length), Store.buffer(raw, ref.rawLength()));
        byte[] d = seg.asSlice(0, ref.rawLength()).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
        synchronized (decoded) {
            if (decoded.put(ref.hex(), d) == null) decodedBytes += d.length;
            var it = decoded.entrySet().iterator();
            while (decodedBytes > DECODED_MAX && it.hasNext()) {
                decodedBytes -= it.next().getValue().length;
                it.remove();
            }
        }
        return d;
    }

    /** An object's pages decoded into {@code into}, its raw length: from memory when it was used lately. */
    private MemorySegment decodeInto(StoreManifest.ObjectRef ref, MemorySegment into) throws StoreException {
        synchronized (decoded) {
            byte[] d = decoded.get(ref.hex());
            if (d != null) {
                MemorySegment.copy(MemorySegment.ofArray(d), 0, into, 0, d.length);
                return into;
            }
        }
        byte[] stored = object(ref);
        if (ref.codec() == dev.gmem.snapshot.Codec.NONE) {
            MemorySegment.copy(stored, 0, into, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, stored.length);
            return into;
        }
        return Store.decode(ref, stored, Store.buffer(staging, stored.length), into);
    }

    /** Asks for every layer's object but the first at once: a window with a base costs one round trip, not two. */
    private void fetchLayersAhead(List<StoreManifest.Layer> layers) {
        for (StoreManifest.Layer l : layers.subList(Math.min(1, layers.size()), layers.size())) {
            synchronized (decoded) {
                if (decoded.containsKey(l.object().hex())) continue;
            }
            CompletableFuture<byte[]> f = inFlight.computeIfAbsent(l.object().hex(), h -> fetchAsync(l.object()));
            f.whenComplete((b, e) -> inFlight.remove(l.object().hex(), f));
        }
    }

    @Override
    public ChunkData read(int index, MemorySegment scratch) throws IOException {
        Chunk chunk = chunks.get(index);
        MemorySegment out = readRun(index, 0, chunk.pages(), scratch, true);
        return ChunkData.packed(
                chunk, out, manifest.regions().get(chunk.region()).pageSize());
    }

    @Override
    public MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch) throws IOException {
        return readRun(index, firstPage, pages, scratch, false);
    }

    /**
     * The data pages of window pages {@code [firstPage, firstPage + pages)} of chunk {@code index},
     * packed in page order at the start of {@code scratch}; with {@code whole}, every data page of
     * the window (holes and zero pages skipped), else the run, which must be all data.
     */
    private MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch, boolean whole)
            throws IOException {
        StoreManifest.StoreChunk c = manifest.chunks().get(index);
        Chunk chunk = chunks.get(index);
        long pageSize = manifest.regions().get(c.region()).pageSize();
        long[] data = chunk.dataMap();
        readAhead(index);
        fetchLayersAhead(c.layers());
        if (whole
                && c.layers().size() == 1
                && java.util.Arrays.equals(c.layers().getFirst().held(), data)) {
            // one object holding just the window's data pages, in page order: decoded where they go
            StoreManifest.ObjectRef ref = c.layers().getFirst().object();
            return decodeInto(ref, scratch.asSlice(0, ref.rawLength()));
        }
        int base = whole ? 0 : StoreManifest.rank(data, firstPage);
        int count = 0;
        for (StoreManifest.Layer l : c.layers()) {
            MemorySegment d = null;
            for (int p = firstPage; p < firstPage + pages; p++) {
                if (!Chunk.test(l.used(), p)) continue;
                // a whole-window reader does not come back: its objects are decoded into this thread's buffer, not kept
                if (d == null)
                    d = whole
                            ? decodeInto(
                                    l.object(),
                                    Store.buffer(raw, l.object().rawLength())
                                            .asSlice(0, l.object().rawLength()))
                            : MemorySegment.ofArray(decodedObject(l.object()));
                MemorySegment.copy(
                        d,
                        StoreManifest.rank(l.held(), p) * pageSize,
                        scratch,
                        (StoreManifest.rank(data, p) - base) * pageSize,
                        pageSize);
                count++;
            }
        }
        return scratch.asSlice(0, count * pageSize);
    }

    /** Every object is checked against its size and CRC32C as it is fetched: a read is a verified read. */
    @Override
    public ChunkData readVerified(int index, MemorySegment scratch) throws IOException {
        return read(index, scratch);
    }

    /** Nothing to do ahead of a read: every object is checked against its size and CRC32C as it is fetched. */
    @Override
    public void verifyChunk(int index) {}

    /**
     * With a cache: fetches every object into it, each checked, so that a restore finds a damaged
     * object before it touches guest memory and then reads from local disk. Without one, a check
     * ahead would download the snapshot twice: every read checks what it fetches instead.
     */
    @Override
    public void verify(int threads, LongConsumer progress) throws IOException {
        for (StoreManifest.NamedObject a : manifest.attachments()) object(a.object());
        if (store.cache() == null) return;
        Parallel.forEach(Math.max(threads, 8), "gmem-store-verify", chunks.size(), i -> {
            for (StoreManifest.Layer l : manifest.chunks().get(i).layers()) object(l.object());
            progress.accept(chunks.get(i).storedLength());
        });
    }

    /** The attachment called {@code name}, checked, or null. */
    public byte[] attachment(String name) throws StoreException {
        for (StoreManifest.NamedObject a : manifest.attachments()) {
            if (a.name().equals(name)) return object(a.object());
        }
        return null;
    }

    /** Every attachment, in order. */
    public java.util.SequencedMap<String, byte[]> attachments() throws StoreException {
        var out = new java.util.LinkedHashMap<String, byte[]>();
        for (StoreManifest.NamedObject a : manifest.attachments()) out.put(a.name(), object(a.object()));
        return out;
    }

    @Override
    public void close() {
        // no fetch outlives the source: one that wrote the cache, or used the client, after it would surprise its owner
        // queued fetches still run (each bounded by the client's time-outs), so no reader waits for ever
        readers.shutdownNow();
        // the read-ahead dropped unstarted leaves futures no task will complete: a reader waiting on one learns why
        StoreException closed = new StoreException(location + ": the source was closed");
        for (CompletableFuture<byte[]> f : inFlight.values()) f.completeExceptionally(closed);
        fetchers.shutdown();
        try {
            if (!fetchers.awaitTermination(90, java.util.concurrent.TimeUnit.SECONDS)) fetchers.shutdownNow();
            readers.awaitTermination(30, java.util.concurrent.TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (ownsStore) store.close();
    }
}
