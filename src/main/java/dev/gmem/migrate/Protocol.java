package dev.gmem.migrate;

import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.SnapshotFormat;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * gmem's post-copy protocol, version {@link #VERSION} (described in {@code docs/postcopy.md}).
 * Every frame is an 8-byte header, big-endian: type (u8), flags (u8, 0), reserved (u16, 0),
 * payload length (u32), then the payload. A destination opens two connections to the source: the
 * <b>control</b> connection, on which it receives the map and sends its urgent requests, whose
 * answers come back on it alone, and the <b>push</b> connection, on which the source streams every
 * data page the destination does not have. Each starts with a HELLO from the destination.
 */
final class Protocol {
    private Protocol() {}

    /**
     * How much nicer than the process the threads that send and receive the push are by default
     * (10; each side's options may say otherwise, 0 for not at all): on a busy core they yield to
     * the threads that serve and receive faults' requests, whose round trip is the latency a
     * faulting vCPU sees; on an idle core they run at full speed all the same. The price: any busy
     * thread of the host at the process's priority (another VM's vCPU, say) outweighs them
     * tenfold, so on a loaded host the push, and the time until a restore no longer needs its
     * source, grows.
     * Threads they start take their nice value: the push starts none (a store's pools start with it).
     */
    static final int PUSH_NICER = 10;

    /** {@code nice}, a push's nice value relative to its process: 0 to 19, or an IllegalArgumentException. */
    static int requirePushNice(int nice) {
        if (nice < 0 || nice > 19) throw new IllegalArgumentException("the push's nice must be 0 to 19, not " + nice);
        return nice;
    }

    /** The calling thread, which moves the push, yields the CPU to the fault path's threads: {@code nicer} (0 to 19) nicer. */
    static void lowerPushPriority(int nicer) {
        if (nicer <= 0) return;
        try {
            int now = dev.gmem.linux.Posix.threadNice();
            dev.gmem.linux.Posix.setThreadNice(Math.min(19, now + nicer)); // only ever nicer
        } catch (dev.gmem.linux.SyscallException e) {
            // raising one's own nice value is always allowed; if it were not, the push runs as before
        }
    }

    static final int VERSION = 1;
    static final byte[] MAGIC = "GMEMPC".getBytes(StandardCharsets.US_ASCII);

    /** The unit of the destination's and the source's page bitmaps: 4 KiB of source offsets. */
    static final long UNIT = 4096;

    // destination -> source
    static final int HELLO = 1;
    static final int REQUEST = 2;
    // both ways
    static final int PING = 3;
    // source -> destination
    static final int MAP = 16;
    static final int DATA = 17;
    static final int PUSH_DONE = 18;
    static final int ERROR = 19;

    static final int ROLE_CONTROL = 0;
    static final int ROLE_PUSH = 1;

    static final int CODEC_NONE = 0;
    static final int CODEC_LZ4 = 1;

    static final int HEADER = 8;
    /** The largest payload of any frame: the map (80 bytes a chunk: some 80 MiB) of a 1 TiB guest of 4 KiB pages fits. */
    static final int MAX_PAYLOAD = 128 << 20;

    /** The largest guest served: 4 TiB (its bitmaps of 4 KiB units are 128 MiB). */
    static final long MAX_GUEST = 4L << 40;
    /** The most data pages' bytes one DATA frame carries. */
    static final int MAX_DATA = 4 << 20;
    /** A DATA frame's fields before its bytes: id, offset, pages, codec, CRC32C, raw length. */
    static final int DATA_FIELDS = 8 + 8 + 4 + 1 + 4 + 4;

    static String typeName(int type) {
        return switch (type) {
            case HELLO -> "HELLO";
            case REQUEST -> "REQUEST";
            case PING -> "PING";
            case MAP -> "MAP";
            case DATA -> "DATA";
            case PUSH_DONE -> "PUSH_DONE";
            case ERROR -> "ERROR";
            default -> "type " + type;
        };
    }

    /** A protocol violation by the peer: the connection ends with it, and it is never retried. */
    static final class ViolationException extends IOException {
        private static final long serialVersionUID = 1L;

        ViolationException(String message) {
            super(message);
        }
    }

    /** The peer refused (an ERROR frame): final, never retried. */
    static final class RefusedException extends IOException {
        private static final long serialVersionUID = 1L;

        RefusedException(String message) {
            super(message);
        }
    }

    /** A frame's header, read. */
    record Header(int type, int length) {}

    /**
     * Reads a frame's header; {@code allowed} frame types only, each at most {@code maxLength}.
     *
     * @throws java.io.EOFException when the peer closed the connection between frames
     */
    static Header readHeader(DataInputStream in, int maxLength, int... allowed) throws IOException {
        int type = in.readUnsignedByte();
        int flags = in.readUnsignedByte();
        int reserved = in.readUnsignedShort();
        int length = in.readInt();
        boolean known = false;
        for (int a : allowed) known |= a == type;
        if (!known) throw new ViolationException("an unexpected frame (" + typeName(type) + ")");
        if (flags != 0 || reserved != 0)
            throw new ViolationException("a " + typeName(type) + " frame with unknown flags");
        if (length < 0 || length > maxLength)
            throw new ViolationException("a " + typeName(type) + " frame of " + Integer.toUnsignedString(length)
                    + " bytes, past its limit of " + maxLength);
        if ((type == PING || type == PUSH_DONE) && length != 0)
            throw new ViolationException("a " + typeName(type) + " frame with a payload");
        return new Header(type, length);
    }

    static void writeHeader(DataOutputStream out, int type, int length) throws IOException {
        out.writeByte(type);
        out.writeByte(0);
        out.writeShort(0);
        out.writeInt(length);
    }

    // ---- HELLO ----

    /** A destination's HELLO: its role, its pairing id, and (on the push connection) the pages it has. */
    record Hello(int version, int role, long pair, long[] have) {}

    static void writeHello(DataOutputStream out, int role, long pair, long[] have) throws IOException {
        writeHeader(out, HELLO, MAGIC.length + 2 + 1 + 8 + 4 + 8 * have.length);
        out.write(MAGIC);
        out.writeShort(VERSION);
        out.writeByte(role);
        out.writeLong(pair);
        out.writeInt(have.length);
        for (long w : have) out.writeLong(w);
        out.flush();
    }

    static Hello readHello(DataInputStream in, long units) throws IOException {
        Header h = readHeader(in, MAX_PAYLOAD, HELLO);
        byte[] magic = new byte[MAGIC.length];
        if (h.length() < MAGIC.length + 2 + 1 + 8 + 4) throw new ViolationException("a HELLO frame cut short");
        in.readFully(magic);
        if (!java.util.Arrays.equals(magic, MAGIC))
            throw new ViolationException("wrong magic: not a gmem post-copy destination");
        int version = in.readUnsignedShort();
        if (version != VERSION)
            throw new ViolationException(
                    "protocol version " + version + ": this source speaks version " + VERSION + " only");
        int role = in.readUnsignedByte();
        if (role != ROLE_CONTROL && role != ROLE_PUSH) throw new ViolationException("an unknown role " + role);
        long pair = in.readLong();
        int words = in.readInt();
        if (words < 0 || words > (units + 63) / 64 || h.length() != MAGIC.length + 2 + 1 + 8 + 4 + 8L * words)
            throw new ViolationException("a HELLO frame whose bitmap does not fit the map");
        long[] have = new long[words];
        for (int i = 0; i < words; i++) have[i] = in.readLong();
        return new Hello(version, role, pair, have);
    }

    // ---- REQUEST ----

    /** A REQUEST: id (u64), offset (u64), pages (u32), kind (u8: {@link #FOR_FAULT} or {@link #FOR_READ}). */
    static final int REQUEST_LENGTH = 8 + 8 + 4 + 1;

    /** A fault's request: its first page will be in place at the destination, so the push skips it and goes on after it. */
    static final int FOR_FAULT = 0;
    /** A read (a check, an eager restore): nothing is put in place by it, so the push still sends those pages. */
    static final int FOR_READ = 1;

    // ---- MAP ----

    /** The map a source sends first: what it is, its regions, its chunks' page kinds, its access order. */
    record SourceMap(String format, String describe, List<Region> regions, List<Chunk> chunks, long[] accessOrder) {
        long size() {
            return Region.totalSize(regions);
        }
    }

    static byte[] encodeMap(SourceMap m) throws IOException {
        java.io.ByteArrayOutputStream b = new java.io.ByteArrayOutputStream();
        DataOutputStream o = new DataOutputStream(b);
        o.writeUTF(m.format());
        o.writeUTF(m.describe());
        o.writeInt(m.regions().size());
        for (Region r : m.regions()) {
            o.writeLong(r.guestAddress());
            o.writeLong(r.size());
            o.writeLong(r.pageSize());
            o.writeLong(r.fileOffset());
        }
        o.writeInt(m.chunks().size());
        for (Chunk c : m.chunks()) {
            o.writeInt(c.region());
            o.writeLong(c.firstPage());
            o.writeInt(c.pages());
            for (long w : c.dataMap()) o.writeLong(w);
            for (long w : c.zeroMap()) o.writeLong(w);
        }
        o.writeInt(m.accessOrder().length);
        for (long a : m.accessOrder()) o.writeLong(a);
        o.flush();
        return b.toByteArray();
    }

    /**
     * Reads and checks a map: regions end to end in ascending guest order with valid page sizes,
     * chunks inside their regions and in order, no page both data and zero, at most {@link
     * #MAX_GUEST} bytes; the access order's addresses outside the regions are ignored where it is
     * used, as a local source's are.
     */
    static SourceMap decodeMap(byte[] bytes) throws IOException {
        DataInputStream in = new DataInputStream(new java.io.ByteArrayInputStream(bytes));
        try {
            String format = in.readUTF();
            String describe = in.readUTF();
            int nr = in.readInt();
            if (nr < 1 || nr > 4096) throw new ViolationException("a map with " + nr + " regions");
            List<Region> regions = new ArrayList<>();
            long fileAt = 0;
            for (int i = 0; i < nr; i++) {
                Region r = new Region(in.readLong(), in.readLong(), in.readLong(), in.readLong());
                if (r.pageSize() < Region.MIN_PAGE
                        || r.pageSize() > Region.MAX_PAGE
                        || Long.bitCount(r.pageSize()) != 1
                        || r.size() <= 0
                        || r.size() > MAX_GUEST - fileAt
                        || r.size() % r.pageSize() != 0
                        || r.fileOffset() != fileAt
                        || r.guestAddress() < 0
                        || r.guestAddress() > Region.MAX_GUEST_ADDRESS - r.size()
                        || r.guestAddress() % r.pageSize() != 0
                        || (i > 0 && r.guestAddress() < regions.get(i - 1).guestEnd()))
                    throw new ViolationException("a map whose region " + i + " is not valid: " + r);
                regions.add(r);
                fileAt += r.size();
            }
            int nc = in.readInt();
            if (nc < 0 || nc > bytes.length / 16) throw new ViolationException("a map with " + nc + " chunks");
            List<Chunk> chunks = new ArrayList<>(nc);
            int lastRegion = 0;
            long lastEnd = 0;
            for (int i = 0; i < nc; i++) {
                int region = in.readInt();
                long firstPage = in.readLong();
                int pages = in.readInt();
                if (region < lastRegion || region >= nr)
                    throw new ViolationException("a map whose chunk " + i + " names region " + region);
                if (region != lastRegion) lastEnd = 0;
                lastRegion = region;
                if (pages < 1
                        || pages > SnapshotFormat.MAX_CHUNK_PAGES
                        || firstPage < lastEnd
                        || firstPage > regions.get(region).pages() - pages)
                    throw new ViolationException(
                            "a map whose chunk " + i + " lies outside its region, or out of order");
                lastEnd = firstPage + pages;
                long[] data = new long[SnapshotFormat.MAP_WORDS];
                long[] zero = new long[SnapshotFormat.MAP_WORDS];
                for (int w = 0; w < data.length; w++) data[w] = in.readLong();
                for (int w = 0; w < zero.length; w++) zero[w] = in.readLong();
                for (int w = 0; w < data.length; w++) {
                    long past = pastWindow(pages, w);
                    if ((data[w] & zero[w]) != 0 || ((data[w] | zero[w]) & past) != 0)
                        throw new ViolationException("a map whose chunk " + i + " has impossible page kinds");
                }
                int dataPages = 0;
                for (long w : data) dataPages += Long.bitCount(w);
                long raw = dataPages * regions.get(region).pageSize();
                chunks.add(new Chunk(region, firstPage, pages, data, zero, Codec.NONE, 0, (int) raw, (int) raw, 0));
            }
            int na = in.readInt();
            if (na < 0 || na > bytes.length / 8) throw new ViolationException("a map with an access order of " + na);
            long[] order = new long[na];
            for (int i = 0; i < na; i++) order[i] = in.readLong();
            if (in.available() != 0) throw new ViolationException("a map with bytes past its end");
            return new SourceMap(format, describe, List.copyOf(regions), List.copyOf(chunks), order);
        } catch (java.io.EOFException e) {
            throw new ViolationException("a map cut short");
        }
    }

    /** The bits of map word {@code w} that lie past a window of {@code pages} pages. */
    private static long pastWindow(int pages, int w) {
        long first = (long) w * 64;
        if (pages >= first + 64) return 0;
        if (pages <= first) return -1L;
        return -1L << (pages - first);
    }

    static void writeError(DataOutputStream out, String message) throws IOException {
        byte[] m = message.getBytes(StandardCharsets.UTF_8);
        int n = Math.min(m.length, 4096);
        writeHeader(out, ERROR, n);
        out.write(m, 0, n);
        out.flush();
    }

    static String readError(DataInputStream in, int length) throws IOException {
        byte[] m = new byte[length];
        in.readFully(m);
        return new String(m, StandardCharsets.UTF_8);
    }
}
