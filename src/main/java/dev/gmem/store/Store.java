package dev.gmem.store;

import dev.gmem.snapshot.Codec;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

/**
 * A store of snapshots at {@code s3://BUCKET/PREFIX/}: manifests under {@code PREFIX/snapshots/},
 * content-addressed objects under {@code PREFIX/chunks/}. Objects are read through the local
 * {@link ChunkCache} when there is one, and every object's bytes are checked against the size and
 * CRC32C its manifest names before anything uses them. Thread-safe.
 */
public final class Store implements AutoCloseable {
    private final StoreClient client;
    private final S3Location root;
    private final ChunkCache cache;

    private final AtomicLong gets = new AtomicLong();
    private final AtomicLong getBytes = new AtomicLong();
    private final AtomicLong puts = new AtomicLong();
    private final AtomicLong putBytes = new AtomicLong();

    /** @param cache null for none */
    public Store(StoreClient client, S3Location location, ChunkCache cache) {
        this.client = client;
        this.root = location.store();
        this.cache = cache;
    }

    public S3Location root() {
        return root;
    }

    public StoreClient client() {
        return client;
    }

    public ChunkCache cache() {
        return cache;
    }

    /** Requests and bytes so far: GETs of objects and manifests, PUTs of both. */
    public record Traffic(long gets, long getBytes, long puts, long putBytes) {}

    public Traffic traffic() {
        return new Traffic(gets.get(), getBytes.get(), puts.get(), putBytes.get());
    }

    /** The snapshot {@code name}'s manifest. */
    public StoreManifest manifest(S3Location snapshot) throws StoreException {
        return StoreManifest.decode(snapshot.toString(), manifestBytes(snapshot));
    }

    /** The bytes of the snapshot's manifest, as stored. */
    byte[] manifestBytes(S3Location snapshot) throws StoreException {
        byte[] bytes = client.get(root.bucket(), snapshot.manifestKey());
        gets.incrementAndGet();
        getBytes.addAndGet(bytes.length);
        return bytes;
    }

    /** Writes a snapshot's manifest: the last step of a push. */
    public void putManifest(S3Location snapshot, StoreManifest m) throws StoreException {
        byte[] bytes = m.encode();
        client.put(root.bucket(), snapshot.manifestKey(), bytes);
        puts.incrementAndGet();
        putBytes.addAndGet(bytes.length);
    }

    /** The names of the store's snapshots, with their manifests' listing entries. */
    public List<StoreClient.ObjectInfo> snapshots() throws StoreException {
        return client.list(root.bucket(), root.manifestsPrefix());
    }

    /** The object's stored bytes, from the cache or the store, checked against its size and CRC32C. */
    public byte[] fetch(StoreManifest.ObjectRef ref) throws StoreException {
        String hex = ref.hex();
        if (cache != null) {
            byte[] cached = cache.get(ref);
            if (cached != null) return cached;
        }
        String key = root.objectKey(hex);
        byte[] bytes = client.get(root.bucket(), key, ref.storedLength());
        gets.incrementAndGet();
        getBytes.addAndGet(bytes.length);
        if (!ref.matches(bytes))
            throw new StoreFormatException(S3Location.SCHEME + root.bucket() + "/" + key + ": "
                    + (bytes.length != ref.storedLength()
                            ? "its " + bytes.length + " bytes are not the " + ref.storedLength()
                            : String.format(
                                    "its CRC32C 0x%08x is not the 0x%08x", StoreManifest.crc32c(bytes), ref.crc32c()))
                    + " the manifest names: damaged in the store");
        if (cache != null) cache.put(hex, bytes);
        return bytes;
    }

    /** Writes an object unless the store has it; returns whether it was written. */
    boolean putObject(String hex, byte[] bytes) throws StoreException {
        String key = root.objectKey(hex);
        if (client.lastModified(root.bucket(), key) != null) return false;
        client.put(root.bucket(), key, bytes);
        puts.incrementAndGet();
        putBytes.addAndGet(bytes.length);
        return true;
    }

    /**
     * Decodes an object's stored bytes into {@code raw} (native, at least its raw length), through
     * {@code staging} (native, at least its stored length) for a compressed one.
     */
    static MemorySegment decode(StoreManifest.ObjectRef ref, byte[] stored, MemorySegment staging, MemorySegment raw)
            throws StoreException {
        MemorySegment in = staging.asSlice(0, stored.length);
        MemorySegment.copy(stored, 0, in, ValueLayout.JAVA_BYTE, 0, stored.length);
        if (ref.codec() == Codec.NONE) return in;
        MemorySegment out = raw.asSlice(0, ref.rawLength());
        try {
            ref.codec().decompress(in, out);
        } catch (IllegalArgumentException e) {
            throw new StoreFormatException("object " + ref.hex() + " does not decode: " + e.getMessage());
        }
        return out;
    }

    /** A thread's native buffer of {@code bytes}, kept for the thread's life. */
    static MemorySegment buffer(ThreadLocal<MemorySegment> slot, long bytes) {
        MemorySegment b = slot.get();
        if (b == null || b.byteSize() < bytes) {
            b = Arena.ofAuto().allocate(Math.max(bytes, 1 << 20), 4096);
            slot.set(b);
        }
        return b;
    }

    @Override
    public void close() {
        client.close();
    }
}
