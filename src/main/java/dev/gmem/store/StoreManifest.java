package dev.gmem.store;

import dev.gmem.snapshot.Attachment;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.SnapshotFormat;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * A snapshot in a store: its regions and, for each window of 1 MiB that has data or zero pages,
 * where each data page comes from. Data lives in content-addressed objects (named by the SHA-256 of
 * their stored bytes), each holding some data pages of one window, packed in page order and stored
 * as its codec says. A window takes its pages from one or more objects (its <i>layers</i>): its own,
 * with the pages that differ from a base snapshot, and the base's layers for the pages that do not.
 * Each data page's 128-bit hash (the first 16 bytes of its SHA-256) is kept, so that the next
 * snapshot based on this one finds the pages that changed without reading any data. Each object
 * is named with its size and the CRC32C of its stored bytes, which every read checks: the SHA-256
 * is the object's name, computed once by the push that stores it.
 *
 * <p>Layout, little-endian: magic {@code GMEMSTOR}, u32 version (2), u32 window bytes, u8 codec
 * asked for, 3 bytes 0, u32 regions, u32 chunks, u32 access-order entries, u32 attachments; the
 * regions (32 bytes each, as in a snapshot); each chunk (u32 region, u32 pages, u64 first page, u32
 * layers, u32 0, 4 x u64 zero-page map, then each layer: 32 bytes SHA-256, u8 codec, 3 bytes 0, u32
 * stored length, u32 raw length, u32 CRC32C of the stored bytes, 4 x u64 map of the pages the object holds, 4 x u64 map of those
 * taken from it; then 16 bytes of hash per data page, in page order); the access order (u64 guest
 * addresses); the attachments (32 bytes name, 32 bytes SHA-256, u32 length, u32
 * CRC32C); and last a u32
 * CRC32C of everything before it.
 */
public record StoreManifest(
        int windowBytes,
        Codec compression,
        List<Region> regions,
        List<StoreChunk> chunks,
        long[] accessOrder,
        List<NamedObject> attachments) {
    static final byte[] MAGIC = "GMEMSTOR".getBytes(StandardCharsets.US_ASCII);
    static final int VERSION = 2;
    static final int WORDS = SnapshotFormat.MAP_WORDS;
    public static final int PAGE_HASH_BYTES = 16;
    /** A window takes its pages from at most this many objects; a push that would need more stores the window anew. */
    public static final int MAX_LAYERS = 4;

    private static final HexFormat HEX = HexFormat.of();

    /**
     * A content-addressed object: its SHA-256 (its name), how it is stored, its stored and decoded
     * sizes, and the CRC32C of its stored bytes (what a read checks).
     */
    public record ObjectRef(byte[] sha256, Codec codec, int storedLength, int rawLength, int crc32c) {
        /** The reference to {@code stored}, which decodes by {@code codec} to {@code rawLength} bytes. */
        public static ObjectRef of(byte[] stored, Codec codec, int rawLength) {
            return new ObjectRef(
                    StorePush.sha256().digest(stored), codec, stored.length, rawLength, StoreManifest.crc32c(stored));
        }

        public String hex() {
            return HEX.formatHex(sha256);
        }

        /** Whether {@code bytes} are this object's: its size and its CRC32C. */
        public boolean matches(byte[] bytes) {
            return bytes.length == storedLength && StoreManifest.crc32c(bytes) == crc32c;
        }
    }

    /** The CRC32C of {@code bytes}, as an object reference records it. */
    public static int crc32c(byte[] bytes) {
        CRC32C c = new CRC32C();
        c.update(bytes);
        return (int) c.getValue();
    }

    /** Pages of a window from one object: those it holds (packed in page order), and those taken. */
    public record Layer(ObjectRef object, long[] held, long[] used) {}

    /** A window: its zero pages, its layers (their taken pages are its data pages), its data pages' hashes. */
    public record StoreChunk(
            int region, long firstPage, int pages, long[] zeroMap, List<Layer> layers, byte[] pageHashes) {
        /** The data pages: every layer's taken pages. */
        public long[] dataMap() {
            long[] d = new long[WORDS];
            for (Layer l : layers) {
                for (int w = 0; w < WORDS; w++) d[w] |= l.used()[w];
            }
            return d;
        }

        /** The hash of window page {@code page}, a data page. */
        public byte[] pageHash(long[] dataMap, int page) {
            int rank = rank(dataMap, page);
            byte[] h = new byte[PAGE_HASH_BYTES];
            System.arraycopy(pageHashes, rank * PAGE_HASH_BYTES, h, 0, PAGE_HASH_BYTES);
            return h;
        }
    }

    /** An attachment, stored as an object. */
    public record NamedObject(String name, ObjectRef object) {}

    static int rank(long[] map, int page) {
        int n = 0;
        for (int w = 0; w < page >>> 6; w++) n += Long.bitCount(map[w]);
        int rest = page & 63;
        if (rest != 0) n += Long.bitCount(map[page >>> 6] & ((1L << rest) - 1));
        return n;
    }

    static int count(long[] map) {
        int n = 0;
        for (long w : map) n += Long.bitCount(w);
        return n;
    }

    /** Every object this manifest names, by hex SHA-256. */
    public java.util.Set<String> objects() {
        java.util.Set<String> out = new java.util.HashSet<>();
        for (StoreChunk c : chunks)
            for (Layer l : c.layers()) out.add(l.object().hex());
        for (NamedObject a : attachments) out.add(a.object().hex());
        return out;
    }

    /** The chunks as a snapshot's {@link Chunk}s (their data stored uncompressed, nowhere in particular). */
    public List<Chunk> asChunks() {
        List<Chunk> out = new ArrayList<>(chunks.size());
        for (StoreChunk c : chunks) {
            long[] data = c.dataMap();
            long raw = (long) count(data) * regions.get(c.region()).pageSize();
            out.add(new Chunk(
                    c.region(),
                    c.firstPage(),
                    c.pages(),
                    data,
                    c.zeroMap().clone(),
                    Codec.NONE,
                    0,
                    (int) raw,
                    (int) raw,
                    0));
        }
        return out;
    }

    public long size() {
        return Region.totalSize(regions);
    }

    public byte[] encode() {
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(encodedLength())).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC)
                .putInt(VERSION)
                .putInt(windowBytes)
                .put((byte) compression.id())
                .put(new byte[3]);
        b.putInt(regions.size())
                .putInt(chunks.size())
                .putInt(accessOrder.length)
                .putInt(attachments.size());
        for (Region r : regions)
            b.putLong(r.guestAddress()).putLong(r.size()).putLong(r.pageSize()).putLong(r.fileOffset());
        for (StoreChunk c : chunks) {
            b.putInt(c.region())
                    .putInt(c.pages())
                    .putLong(c.firstPage())
                    .putInt(c.layers().size())
                    .putInt(0);
            for (long w : c.zeroMap()) b.putLong(w);
            for (Layer l : c.layers()) {
                putRef(b, l.object());
                for (long w : l.held()) b.putLong(w);
                for (long w : l.used()) b.putLong(w);
            }
            b.put(c.pageHashes());
        }
        for (long a : accessOrder) b.putLong(a);
        for (NamedObject a : attachments) {
            byte[] name = a.name().getBytes(StandardCharsets.US_ASCII);
            b.put(name).put(new byte[Attachment.NAME_BYTES - name.length]);
            b.put(a.object().sha256())
                    .putInt(a.object().rawLength())
                    .putInt(a.object().crc32c());
        }
        CRC32C crc = new CRC32C();
        crc.update(b.array(), 0, b.position());
        b.putInt((int) crc.getValue());
        return b.array();
    }

    private static void putRef(ByteBuffer b, ObjectRef r) {
        b.put(r.sha256())
                .put((byte) r.codec().id())
                .put(new byte[3])
                .putInt(r.storedLength())
                .putInt(r.rawLength())
                .putInt(r.crc32c());
    }

    private long encodedLength() {
        long n = 8 + 4 + 4 + 4 + 16 + 32L * regions.size();
        for (StoreChunk c : chunks) n += 24 + 32 + c.layers().size() * (48L + 64) + c.pageHashes().length;
        return n + 8L * accessOrder.length + (32 + 40L) * attachments.size() + 4;
    }

    /**
     * Reads a manifest fetched from {@code where}, checking its checksum, every count against its
     * length, and every map: a layer takes only pages its object holds, no page is taken twice or
     * is both data and zero, and every object's size fits its pages.
     */
    public static StoreManifest decode(String where, byte[] bytes) throws StoreException {
        ByteBuffer b = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
        try {
            if (bytes.length < 40) throw bad(where, "truncated: " + bytes.length + " bytes");
            for (int i = 0; i < MAGIC.length; i++)
                if (b.get(i) != MAGIC[i]) throw bad(where, "not a gmem store manifest (wrong magic)");
            CRC32C crc = new CRC32C();
            crc.update(bytes, 0, bytes.length - 4);
            int stored = b.getInt(bytes.length - 4);
            if (stored != (int) crc.getValue())
                throw bad(
                        where,
                        "checksum mismatch: stored " + String.format("0x%08x", stored) + ", computed "
                                + String.format("0x%08x", (int) crc.getValue()));
            b.position(8);
            int version = b.getInt();
            if (version == 1)
                throw bad(
                        where,
                        "store manifest version 1, from a development build before objects carried checksums:"
                                + " push the snapshot again, or remove it (gmem snapshot rm)");
            if (version != VERSION)
                throw bad(where, "unknown store manifest version " + version + " (this gmem reads " + VERSION + ")");
            int window = b.getInt();
            Codec compression = Codec.ofId(b.get() & 0xff);
            b.position(b.position() + 3);
            int regionCount = b.getInt();
            int chunkCount = b.getInt();
            int accessCount = b.getInt();
            int attachmentCount = b.getInt();
            if (compression == null
                    || window != SnapshotFormat.CHUNK_BYTES
                    || regionCount < 1
                    || chunkCount < 0
                    || accessCount < 0
                    || attachmentCount < 0) throw bad(where, "a header field is out of range");
            List<Region> regions = new ArrayList<>();
            for (int i = 0; i < regionCount; i++)
                regions.add(new Region(b.getLong(), b.getLong(), b.getLong(), b.getLong()));
            try {
                regions = Region.endToEnd(regions);
            } catch (IllegalArgumentException e) {
                throw bad(where, e.getMessage());
            }
            List<StoreChunk> chunks = new ArrayList<>(chunkCount);
            java.util.Map<String, ObjectRef> refs = new java.util.HashMap<>();
            int previousRegion = -1;
            long previousPage = -1;
            for (int i = 0; i < chunkCount; i++) {
                String what = "chunk " + i;
                int region = b.getInt();
                int pages = b.getInt();
                long first = b.getLong();
                int layerCount = b.getInt();
                b.getInt();
                if (region < 0 || region >= regions.size()) throw bad(where, what + ": no region " + region);
                Region r = regions.get(region);
                long windowPages = Math.max(1, window / r.pageSize());
                if (first < 0
                        || first % windowPages != 0
                        || first >= r.pages()
                        || pages != Math.min(windowPages, r.pages() - first))
                    throw bad(where, what + ": not a window of region " + region);
                if (region < previousRegion || (region == previousRegion && first <= previousPage))
                    throw bad(where, what + ": out of order");
                previousRegion = region;
                previousPage = first;
                if (layerCount < 0 || layerCount > MAX_LAYERS) throw bad(where, what + ": " + layerCount + " layers");
                long[] zero = words(b);
                long[] data = new long[WORDS];
                checkWithin(where, what, zero, pages);
                List<Layer> layers = new ArrayList<>();
                for (int l = 0; l < layerCount; l++) {
                    ObjectRef o = ref(where, what, b);
                    ObjectRef same = refs.putIfAbsent(o.hex(), o);
                    if (same != null
                            && (same.codec() != o.codec()
                                    || same.storedLength() != o.storedLength()
                                    || same.rawLength() != o.rawLength()
                                    || same.crc32c() != o.crc32c()))
                        throw bad(where, what + ": object " + o.hex() + " is described two ways");
                    long[] held = words(b);
                    long[] used = words(b);
                    checkWithin(where, what, held, pages);
                    for (int w = 0; w < WORDS; w++) {
                        if ((used[w] & ~held[w]) != 0)
                            throw bad(where, what + ": a layer takes pages its object does not hold");
                        if ((used[w] & (data[w] | zero[w])) != 0)
                            throw bad(where, what + ": a page taken twice, or data and zero");
                        data[w] |= used[w];
                    }
                    if ((long) count(held) * r.pageSize() != o.rawLength() || count(held) == 0)
                        throw bad(
                                where,
                                what + ": object " + o.hex() + " is " + o.rawLength() + " bytes for " + count(held)
                                        + " pages");
                    layers.add(new Layer(o, held, used));
                }
                if (count(data) + count(zero) == 0) throw bad(where, what + ": neither data nor zero pages");
                byte[] hashes = new byte[count(data) * PAGE_HASH_BYTES];
                b.get(hashes);
                chunks.add(new StoreChunk(region, first, pages, zero, List.copyOf(layers), hashes));
            }
            long[] order = new long[accessCount];
            for (int i = 0; i < accessCount; i++) {
                order[i] = b.getLong();
                boolean page = false;
                for (Region r : regions)
                    page |= r.containsGuest(order[i]) && (order[i] - r.guestAddress()) % r.pageSize() == 0;
                if (!page)
                    throw bad(
                            where,
                            "access order entry " + i + ": 0x" + Long.toHexString(order[i])
                                    + " is not a page of any region");
            }
            List<NamedObject> attachments = new ArrayList<>();
            for (int i = 0; i < attachmentCount; i++) {
                byte[] name = new byte[Attachment.NAME_BYTES];
                b.get(name);
                int n = 0;
                while (n < name.length && name[n] != 0) n++;
                String s = new String(name, 0, n, StandardCharsets.US_ASCII);
                if (!Attachment.validName(s)) throw bad(where, "attachment " + i + ": name '" + s + "'");
                for (int k = n; k < name.length; k++)
                    if (name[k] != 0) throw bad(where, "attachment " + i + ": bytes after its name's end");
                for (NamedObject other : attachments)
                    if (other.name().equals(s)) throw bad(where, "attachment " + i + ": a second '" + s + "'");
                byte[] sha = new byte[32];
                b.get(sha);
                int length = b.getInt();
                int sum = b.getInt();
                if (length < 0 || length > Attachment.MAX_BYTES)
                    throw bad(where, "attachment " + i + " ('" + s + "'): length " + length);
                attachments.add(new NamedObject(s, new ObjectRef(sha, Codec.NONE, length, length, sum)));
            }
            if (b.position() != bytes.length - 4)
                throw bad(where, (bytes.length - 4 - b.position()) + " bytes past its last entry");
            return new StoreManifest(
                    window, compression, List.copyOf(regions), List.copyOf(chunks), order, List.copyOf(attachments));
        } catch (java.nio.BufferUnderflowException | IndexOutOfBoundsException e) {
            throw bad(where, "truncated: its counts need more than its " + bytes.length + " bytes");
        }
    }

    private static ObjectRef ref(String where, String what, ByteBuffer b) throws StoreException {
        byte[] sha = new byte[32];
        b.get(sha);
        Codec codec = Codec.ofId(b.get() & 0xff);
        if (b.get() != 0 || b.get() != 0 || b.get() != 0) throw bad(where, what + ": reserved bytes are not zero");
        int stored = b.getInt();
        int raw = b.getInt();
        int crc = b.getInt();
        if (codec == null
                || stored <= 0
                || raw <= 0
                || (codec == Codec.NONE && stored != raw)
                || stored > codec.bound(raw)) throw bad(where, what + ": a layer's object is not described right");
        return new ObjectRef(sha, codec, stored, raw, crc);
    }

    private static long[] words(ByteBuffer b) {
        long[] w = new long[WORDS];
        for (int i = 0; i < WORDS; i++) w[i] = b.getLong();
        return w;
    }

    private static void checkWithin(String where, String what, long[] map, int pages) throws StoreException {
        for (int w = 0; w < WORDS; w++) {
            int from = pages - w * 64;
            long beyond = from <= 0 ? -1L : from >= 64 ? 0 : -1L << from;
            if ((map[w] & beyond) != 0) throw bad(where, what + ": page bits past the window's " + pages + " pages");
        }
    }

    private static StoreException bad(String where, String why) {
        return new StoreFormatException(where + ": " + why);
    }
}
