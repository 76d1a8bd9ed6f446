package dev.gmem.store;

import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.SnapshotFormat;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.security.MessageDigest;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SequencedMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * Pushes a snapshot (any {@link PageSource}) into a store. Each window's data pages become one
 * content-addressed object, uploaded only when the store lacks it; with a base snapshot, only the
 * pages whose hash differs from the base's page at the same place go into the window's object,
 * and the rest are taken from the base's objects. Zero pages and holes are never stored. The
 * manifest is written last, so a push cut short leaves no manifest that names a missing object.
 *
 * <p>Against a concurrent {@code gmem store gc}: an object this push reuses that is older than
 * {@link StoreGc#TOUCH_AFTER} is rewritten onto itself first (which makes it new), and gc removes
 * only objects older than its grace, twice that; so no object a live push relies on is removed,
 * as long as a push takes less than the difference.
 */
public final class StorePush {
    private StorePush() {}

    public record Report(
            String target,
            String base,
            long guestBytes,
            long dataBytes,
            long pagesFromBase,
            long objects,
            long objectsUploaded,
            long bytesUploaded,
            long objectsTouched,
            double elapsedMs) {
        /** Uploaded bytes over data bytes. */
        public double uploadedFraction() {
            return dataBytes == 0 ? 0 : (double) bytesUploaded / dataBytes;
        }
    }

    public static Report push(
            Store store,
            PageSource source,
            S3Location target,
            S3Location base,
            Codec codec,
            SequencedMap<String, byte[]> attachments,
            int threads,
            LongConsumer progress)
            throws IOException {
        long t0 = System.nanoTime();
        StoreManifest baseManifest = null;
        Map<Long, StoreManifest.StoreChunk> baseChunks = new HashMap<>();
        if (base != null) {
            if (!base.store().equals(target.store()))
                throw new StoreException(
                        "the base " + base + " is in another store than " + target + ": a base must share its objects");
            baseManifest = store.manifest(base);
            if (!baseManifest.regions().equals(source.regions()))
                throw new StoreException("the base " + base + " has other regions than " + source.name()
                        + ": a base must be of the same VM layout");
            for (StoreManifest.StoreChunk c : baseManifest.chunks()) baseChunks.put(key(c.region(), c.firstPage()), c);
        }
        List<Region> regions = source.regions();
        List<Chunk> chunks = source.chunks();
        StoreManifest.StoreChunk[] out = new StoreManifest.StoreChunk[chunks.size()];
        AtomicLong fromBase = new AtomicLong();
        AtomicLong uploaded = new AtomicLong();
        AtomicLong uploadedBytes = new AtomicLong();
        AtomicLong touched = new AtomicLong();
        Map<String, Boolean> known = new ConcurrentHashMap<>();
        ThreadLocal<MemorySegment> scratch = new ThreadLocal<>();
        ThreadLocal<MemorySegment> staging = new ThreadLocal<>();
        ThreadLocal<MemorySegment> compressed = new ThreadLocal<>();
        ThreadLocal<MessageDigest> digests = ThreadLocal.withInitial(StorePush::sha256);
        Parallel.forEach(Math.max(1, threads), "gmem-push", chunks.size(), i -> {
            Chunk c = chunks.get(i);
            long pageSize = regions.get(c.region()).pageSize();
            int dataPages = c.dataPages();
            byte[] hashes = new byte[dataPages * StoreManifest.PAGE_HASH_BYTES];
            List<StoreManifest.Layer> layers = new ArrayList<>();
            if (dataPages > 0) {
                // checked against the source's own checksum first: a local snapshot's damage is not sealed under a new
                // hash
                ChunkData data = source.readVerified(i, Store.buffer(scratch, source.scratchBytes()));
                MessageDigest md = digests.get();
                long[] dataMap = c.dataMap();
                StoreManifest.StoreChunk b = baseChunks.get(key(c.region(), c.firstPage()));
                long[] baseData = b == null ? null : b.dataMap();
                long[] taken = new long[SnapshotFormat.MAP_WORDS];
                int rank = 0;
                for (int p = 0; p < c.pages(); p++) {
                    if (!Chunk.test(dataMap, p)) continue;
                    md.update(data.run(p, 1).asByteBuffer());
                    byte[] h = md.digest();
                    System.arraycopy(h, 0, hashes, rank * StoreManifest.PAGE_HASH_BYTES, StoreManifest.PAGE_HASH_BYTES);
                    rank++;
                    if (baseData != null
                            && Chunk.test(baseData, p)
                            && Arrays.equals(
                                    b.pageHash(baseData, p),
                                    0,
                                    StoreManifest.PAGE_HASH_BYTES,
                                    h,
                                    0,
                                    StoreManifest.PAGE_HASH_BYTES)) taken[p >>> 6] |= 1L << (p & 63);
                }
                if (b != null) {
                    for (StoreManifest.Layer l : b.layers()) {
                        long[] used = new long[SnapshotFormat.MAP_WORDS];
                        boolean any = false;
                        for (int w = 0; w < used.length; w++) {
                            used[w] = l.used()[w] & taken[w];
                            any |= used[w] != 0;
                        }
                        if (any) layers.add(new StoreManifest.Layer(l.object(), l.held(), used));
                    }
                }
                long[] own = new long[SnapshotFormat.MAP_WORDS];
                for (int w = 0; w < own.length; w++) own[w] = dataMap[w] & ~taken[w];
                if (StoreManifest.count(own) > 0 && layers.size() + 1 > StoreManifest.MAX_LAYERS) {
                    layers.clear(); // too many layers for one window: it is stored anew, whole
                    own = dataMap.clone();
                }
                int fromBaseHere = dataPages - StoreManifest.count(own);
                fromBase.addAndGet(fromBaseHere);
                for (StoreManifest.Layer l : layers) {
                    if (touchIfOld(store, l.object().hex(), known)) touched.incrementAndGet();
                }
                if (StoreManifest.count(own) > 0) {
                    MemorySegment packed = Store.buffer(staging, (long) c.pages() * pageSize);
                    long at = 0;
                    for (int p = 0; p < c.pages(); p++) {
                        if (!Chunk.test(own, p)) continue;
                        MemorySegment.copy(data.run(p, 1), 0, packed, at, pageSize);
                        at += pageSize;
                    }
                    MemorySegment raw = packed.asSlice(0, at);
                    MemorySegment stored = raw;
                    Codec used = Codec.NONE;
                    if (codec != Codec.NONE) {
                        MemorySegment z = Store.buffer(compressed, codec.bound(at));
                        int n = codec.compress(raw, z);
                        if (n < at) {
                            stored = z.asSlice(0, n);
                            used = codec;
                        }
                    }
                    byte[] bytes = stored.toArray(ValueLayout.JAVA_BYTE);
                    StoreManifest.ObjectRef ref = StoreManifest.ObjectRef.of(bytes, used, (int) at);
                    String hex = ref.hex();
                    if (known.putIfAbsent(hex, Boolean.TRUE) == null) {
                        if (store.putObject(hex, bytes)) {
                            uploaded.incrementAndGet();
                            uploadedBytes.addAndGet(bytes.length);
                        } else if (touchIfOld(store, hex, new ConcurrentHashMap<>())) touched.incrementAndGet();
                    }
                    layers.addFirst(new StoreManifest.Layer(ref, own.clone(), own.clone()));
                }
            }
            out[i] = new StoreManifest.StoreChunk(
                    c.region(), c.firstPage(), c.pages(), c.zeroMap().clone(), List.copyOf(layers), hashes);
            progress.accept((long) c.pages() * pageSize);
        });
        List<StoreManifest.NamedObject> named = new ArrayList<>();
        for (var e : attachments.entrySet()) {
            byte[] bytes = e.getValue();
            StoreManifest.ObjectRef ref = StoreManifest.ObjectRef.of(bytes, Codec.NONE, bytes.length);
            String hex = ref.hex();
            if (known.putIfAbsent(hex, Boolean.TRUE) == null) {
                if (store.putObject(hex, bytes)) {
                    uploaded.incrementAndGet();
                    uploadedBytes.addAndGet(bytes.length);
                } else if (touchIfOld(store, hex, known)) touched.incrementAndGet();
            }
            named.add(new StoreManifest.NamedObject(e.getKey(), ref));
        }
        StoreManifest m = new StoreManifest(
                SnapshotFormat.CHUNK_BYTES, codec, regions, List.of(out), source.accessOrder(), List.copyOf(named));
        store.putManifest(target, m);
        long data = 0;
        for (Chunk c : chunks)
            data += (long) c.dataPages() * regions.get(c.region()).pageSize();
        return new Report(
                target.toString(),
                base == null ? null : base.toString(),
                source.size(),
                data,
                fromBase.get(),
                m.objects().size(),
                uploaded.get(),
                uploadedBytes.get(),
                touched.get(),
                (System.nanoTime() - t0) / 1e6);
    }

    /** Rewrites an object this push reuses onto itself when it is old enough for a gc to take; once per push. */
    private static boolean touchIfOld(Store store, String hex, Map<String, Boolean> seen) throws StoreException {
        if (seen.putIfAbsent("touch:" + hex, Boolean.TRUE) != null) return false;
        String key = store.root().objectKey(hex);
        Instant t = store.client().lastModified(store.root().bucket(), key);
        if (t == null)
            throw new StoreException(S3Location.SCHEME + store.root().bucket() + "/" + key
                    + ": an object the base names is missing from the store");
        if (Duration.between(t, Instant.now()).compareTo(StoreGc.TOUCH_AFTER) < 0) return false;
        store.client().touch(store.root().bucket(), key);
        return true;
    }

    static long key(int region, long firstPage) {
        return ((long) region << 48) | firstPage;
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException("the JDK has no SHA-256", e);
        }
    }
}
