package dev.gmem.snapshot;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * gmem's snapshot format, versions 1 and 2 (specified in docs/snapshot-format.md). All integers
 * little-endian. Version 2 adds attachments; a snapshot without them is written as version 1, so
 * that every gmem reads it.
 *
 * <pre>
 * header, 4096 bytes at offset 0
 *   0  magic "GMEMSNAP"        8  u32 version (1 or 2)   12 u32 header size (4096)
 *   16 u64 manifest offset     24 u64 manifest length    32 u32 CRC32C of the manifest
 *   36 u32 CRC32C of bytes 0..35; the rest of the header is zero
 * chunk data: each chunk's data pages, packed in page order, stored as its codec says; stored
 *   bytes of uncompressed chunks start page-aligned
 * manifest, at the end
 *   0  magic "GMEMMANI"   8 u32 chunk bytes   12 u8 checksum (1 = CRC32C)   13 u8 compression
 *   14 u16 0   16 u32 region count   20 u32 attachment count (version 1: 0)   24 u64 chunk count
 *   32 u64 access-order count
 *   40 regions, 32 bytes each: u64 guest address, u64 size, u64 page size, u64 file offset
 *      chunks, 104 bytes each: u32 region, u8 codec, 3 bytes 0, u64 first page, u64 data offset,
 *        u32 stored length, u32 raw length, u32 CRC32C of the stored bytes, u32 0,
 *        4 x u64 data-page bitmap, 4 x u64 zero-page bitmap
 *      access order: u64 guest physical address per page
 *      attachments, 64 bytes each: 32 bytes name (NUL-padded), u64 data offset, u64 length,
 *        u32 CRC32C of the data, 12 bytes 0; their data lies after every chunk's, in entry order
 * </pre>
 *
 * The header is written last, so a file whose packing did not finish has no valid header.
 */
public final class SnapshotFormat {
    /** The version of a snapshot without attachments. */
    public static final int VERSION = 1;
    /** The version of a snapshot with attachments; the newest this gmem reads. */
    public static final int VERSION_ATTACHMENTS = 2;

    public static final int HEADER_SIZE = 4096;
    public static final int CHUNK_BYTES = 1 << 20;
    public static final int MAX_CHUNK_PAGES = 256;
    public static final int MAP_WORDS = MAX_CHUNK_PAGES / 64;
    static final byte[] MAGIC = "GMEMSNAP".getBytes(StandardCharsets.US_ASCII);
    static final byte[] MANIFEST_MAGIC = "GMEMMANI".getBytes(StandardCharsets.US_ASCII);
    static final int CHECKSUM_CRC32C = 1;
    static final int MANIFEST_FIXED = 40;
    static final int REGION_BYTES = 32;
    static final int CHUNK_ENTRY_BYTES = 104;
    static final int ATTACHMENT_BYTES = 64;
    static final int HEADER_CRC_AT = 36;

    private SnapshotFormat() {}

    /** Where the manifest is, as the header says. */
    public record Header(int version, long manifestOffset, long manifestLength, int manifestCrc) {}

    /** Whether {@code start} (the first bytes of a file) begins with the snapshot magic. */
    public static boolean hasMagic(ByteBuffer start) {
        if (start.remaining() < MAGIC.length) return false;
        for (int i = 0; i < MAGIC.length; i++) {
            if (start.get(start.position() + i) != MAGIC[i]) return false;
        }
        return true;
    }

    /** The version a manifest is written as: the lowest that holds it. */
    static int versionOf(Manifest m) {
        return m.attachments().isEmpty() ? VERSION : VERSION_ATTACHMENTS;
    }

    static ByteBuffer encodeHeader(int version, long manifestOffset, long manifestLength, int manifestCrc) {
        ByteBuffer b = ByteBuffer.allocateDirect(HEADER_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC)
                .putInt(version)
                .putInt(HEADER_SIZE)
                .putLong(manifestOffset)
                .putLong(manifestLength)
                .putInt(manifestCrc);
        b.putInt(HEADER_CRC_AT, crc(b.duplicate().position(0).limit(HEADER_CRC_AT)));
        return b.clear();
    }

    /** Reads and checks the header: the first {@link #HEADER_SIZE} bytes of a file of {@code fileSize} bytes. */
    static Header decodeHeader(Path file, ByteBuffer b, long fileSize) throws SnapshotFormatException {
        b = b.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        if (fileSize < HEADER_SIZE || b.remaining() < HEADER_SIZE) {
            throw new SnapshotFormatException(
                    file,
                    "truncated: " + fileSize + " bytes, shorter than the " + HEADER_SIZE + "-byte snapshot header");
        }
        if (!hasMagic(b))
            throw new SnapshotFormatException(
                    file, "not a gmem snapshot: wrong magic at offset 0 (expected \"GMEMSNAP\")");
        int version = b.getInt(8);
        if (version != VERSION && version != VERSION_ATTACHMENTS) {
            throw new SnapshotFormatException(
                    file,
                    "unknown snapshot format version " + Integer.toUnsignedString(version)
                            + " (this gmem reads versions " + VERSION + " and " + VERSION_ATTACHMENTS + ")");
        }
        int stored = b.getInt(HEADER_CRC_AT);
        int actual = crc(b.duplicate().position(0).limit(HEADER_CRC_AT));
        if (stored != actual)
            throw new SnapshotFormatException(
                    file, "checksum mismatch in the header: stored " + hex(stored) + ", computed " + hex(actual));
        if (b.getInt(12) != HEADER_SIZE)
            throw new SnapshotFormatException(file, "header size " + b.getInt(12) + ", expected " + HEADER_SIZE);
        for (int i = HEADER_CRC_AT + 4; i < HEADER_SIZE; i++) {
            if (b.get(i) != 0) throw new SnapshotFormatException(file, "header byte " + i + " is not zero");
        }
        long offset = b.getLong(16);
        long length = b.getLong(24);
        if (offset < HEADER_SIZE || length < MANIFEST_FIXED || offset > fileSize || length > fileSize - offset) {
            throw new SnapshotFormatException(
                    file,
                    (offset >= HEADER_SIZE
                                            && length >= 0
                                            && offset <= Long.MAX_VALUE - length
                                            && offset + length > fileSize
                                    ? "truncated: "
                                    : "")
                            + "the manifest at offset " + offset + " (" + length
                            + " bytes) does not lie within the file (" + fileSize
                            + " bytes, data from offset " + HEADER_SIZE + ")");
        }
        if (offset + length != fileSize) {
            throw new SnapshotFormatException(
                    file,
                    "the manifest ends at offset " + (offset + length) + " but the file is " + fileSize + " bytes");
        }
        return new Header(version, offset, length, b.getInt(32));
    }

    static byte[] encodeManifest(Manifest m) {
        long length = (long) MANIFEST_FIXED
                + (long) REGION_BYTES * m.regions().size()
                + (long) CHUNK_ENTRY_BYTES * m.chunks().size()
                + 8L * m.accessOrder().length
                + (long) ATTACHMENT_BYTES * m.attachments().size();
        ByteBuffer b = ByteBuffer.allocate(Math.toIntExact(length)).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MANIFEST_MAGIC)
                .putInt(m.chunkBytes())
                .put((byte) CHECKSUM_CRC32C)
                .put((byte) m.compression().id())
                .putShort((short) 0)
                .putInt(m.regions().size())
                .putInt(m.attachments().size())
                .putLong(m.chunks().size())
                .putLong(m.accessOrder().length);
        for (Region r : m.regions())
            b.putLong(r.guestAddress()).putLong(r.size()).putLong(r.pageSize()).putLong(r.fileOffset());
        for (Chunk c : m.chunks()) {
            b.putInt(c.region())
                    .put((byte) c.codec().id())
                    .put((byte) 0)
                    .putShort((short) 0)
                    .putLong(c.firstPage())
                    .putLong(c.offset())
                    .putInt(c.storedLength())
                    .putInt(c.rawLength())
                    .putInt(c.crc32c())
                    .putInt(0);
            for (long w : c.dataMap()) b.putLong(w);
            for (long w : c.zeroMap()) b.putLong(w);
        }
        for (long a : m.accessOrder()) b.putLong(a);
        for (Attachment a : m.attachments()) {
            byte[] name = Attachment.encodedName(a.name());
            b.put(name).put(new byte[Attachment.NAME_BYTES - name.length]);
            b.putLong(a.offset()).putLong(a.length()).putInt(a.crc32c()).put(new byte[12]);
        }
        return b.array();
    }

    /**
     * Parses and checks a manifest of format {@code version} that was read from
     * {@code [dataEnd, dataEnd + b.remaining())} of {@code file}: every count against the length,
     * every region, every chunk against its region, its neighbours and the data area
     * {@code [HEADER_SIZE, dataEnd)}, every access-order address, every attachment.
     */
    static Manifest decodeManifest(Path file, ByteBuffer b, long dataEnd, int expectedCrc, int version)
            throws SnapshotFormatException {
        b = b.slice().order(ByteOrder.LITTLE_ENDIAN);
        int actualCrc = crc(b.duplicate());
        if (actualCrc != expectedCrc) {
            throw new SnapshotFormatException(
                    file,
                    "checksum mismatch in the manifest at offset " + dataEnd + ": stored " + hex(expectedCrc)
                            + ", computed " + hex(actualCrc));
        }
        String at = "manifest at offset " + dataEnd;
        for (int i = 0; i < MANIFEST_MAGIC.length; i++) {
            if (b.get(i) != MANIFEST_MAGIC[i])
                throw new SnapshotFormatException(file, at + ": wrong magic (expected \"GMEMMANI\")");
        }
        int chunkBytes = b.getInt(8);
        int checksum = b.get(12) & 0xff;
        int compressionId = b.get(13) & 0xff;
        long regionCount = Integer.toUnsignedLong(b.getInt(16));
        long chunkCount = b.getLong(24);
        long accessCount = b.getLong(32);
        long attachmentCount = Integer.toUnsignedLong(b.getInt(20));
        if (chunkBytes < 4096 || Integer.bitCount(chunkBytes) != 1 || chunkBytes / Region.MIN_PAGE > MAX_CHUNK_PAGES) {
            throw new SnapshotFormatException(
                    file,
                    at + ": chunk size " + chunkBytes + " is not a power of two from 4096 to "
                            + (MAX_CHUNK_PAGES * Region.MIN_PAGE));
        }
        if (checksum != CHECKSUM_CRC32C)
            throw new SnapshotFormatException(
                    file, at + ": unknown checksum algorithm " + checksum + " (expected 1, CRC32C)");
        Codec compression = Codec.ofId(compressionId);
        if (compression == null) throw new SnapshotFormatException(file, at + ": unknown compression " + compressionId);
        if (b.getShort(14) != 0 || (version == VERSION && attachmentCount != 0))
            throw new SnapshotFormatException(file, at + ": reserved fields are not zero");
        long expected = expectedLength(regionCount, chunkCount, accessCount, attachmentCount);
        if (regionCount == 0 || expected != b.remaining()) {
            throw new SnapshotFormatException(
                    file,
                    at + ": " + regionCount + " regions, " + chunkCount + " chunks, " + accessCount
                            + " access-order entries and " + attachmentCount + " attachments need "
                            + (expected < 0 ? "more than 2^63" : expected)
                            + " bytes, but the manifest has " + b.remaining()
                            + (regionCount == 0 ? " (a snapshot needs at least one region)" : ""));
        }
        int pos = MANIFEST_FIXED;
        List<Region> regions = new ArrayList<>((int) regionCount);
        for (int i = 0; i < regionCount; i++, pos += REGION_BYTES) {
            regions.add(new Region(b.getLong(pos), b.getLong(pos + 8), b.getLong(pos + 16), b.getLong(pos + 24)));
        }
        List<Region> laid;
        try {
            laid = Region.endToEnd(regions);
        } catch (IllegalArgumentException e) {
            throw new SnapshotFormatException(file, at + ": " + e.getMessage());
        }
        for (int i = 0; i < regionCount; i++) {
            if (laid.get(i).fileOffset() != regions.get(i).fileOffset()) {
                throw new SnapshotFormatException(
                        file,
                        at + ": region " + i + " says file offset "
                                + regions.get(i).fileOffset() + ", but laid end to end it starts at "
                                + laid.get(i).fileOffset());
            }
        }
        Manifest partial = new Manifest(chunkBytes, compression, laid, List.of(), new long[0]);
        List<Chunk> chunks = new ArrayList<>((int) chunkCount);
        long previousEnd = HEADER_SIZE;
        int previousRegion = -1;
        long previousPage = -1;
        for (long i = 0; i < chunkCount; i++, pos += CHUNK_ENTRY_BYTES) {
            long regionIndex = Integer.toUnsignedLong(b.getInt(pos));
            Codec codec = Codec.ofId(b.get(pos + 4) & 0xff);
            if (b.get(pos + 5) != 0 || b.getShort(pos + 6) != 0 || b.getInt(pos + 36) != 0)
                throw badChunk(file, i, "reserved fields are not zero");
            if (regionIndex >= regionCount)
                throw badChunk(file, i, "region " + regionIndex + " does not exist (" + regionCount + " regions)");
            if (codec == null) throw badChunk(file, i, "unknown codec " + (b.get(pos + 4) & 0xff));
            Region r = laid.get((int) regionIndex);
            int window = partial.windowPages(r.pageSize());
            long firstPage = b.getLong(pos + 8);
            if (firstPage < 0 || firstPage >= r.pages() || firstPage % window != 0) {
                throw badChunk(
                        file,
                        i,
                        "first page " + firstPage + " is not the start of a " + window + "-page window of region "
                                + regionIndex + " (" + r.pages() + " pages)");
            }
            if ((int) regionIndex < previousRegion
                    || ((int) regionIndex == previousRegion && firstPage <= previousPage)) {
                throw badChunk(
                        file,
                        i,
                        "out of order or overlapping the chunk before it (region " + regionIndex + ", page " + firstPage
                                + ")");
            }
            previousRegion = (int) regionIndex;
            previousPage = firstPage;
            int pages = (int) Math.min(window, r.pages() - firstPage);
            long offset = b.getLong(pos + 16);
            long stored = Integer.toUnsignedLong(b.getInt(pos + 24));
            long raw = Integer.toUnsignedLong(b.getInt(pos + 28));
            int crc = b.getInt(pos + 32);
            long[] data = new long[MAP_WORDS];
            long[] zero = new long[MAP_WORDS];
            for (int w = 0; w < MAP_WORDS; w++) {
                data[w] = b.getLong(pos + 40 + 8 * w);
                zero[w] = b.getLong(pos + 40 + 8 * MAP_WORDS + 8 * w);
                long beyond = pageMaskBeyond(pages, w);
                if (((data[w] | zero[w]) & beyond) != 0)
                    throw badChunk(file, i, "page bits set past the window's " + pages + " pages");
                if ((data[w] & zero[w]) != 0) throw badChunk(file, i, "pages marked both data and zero");
            }
            Chunk c = new Chunk(
                    (int) regionIndex, firstPage, pages, data, zero, codec, offset, (int) stored, (int) raw, crc);
            long expectRaw = c.dataPages() * r.pageSize();
            if (raw != expectRaw) {
                throw badChunk(
                        file,
                        i,
                        "raw length " + raw + ", but its " + c.dataPages() + " data pages of " + r.pageSize()
                                + " bytes make " + expectRaw);
            }
            if (c.dataPages() == 0) {
                if (stored != 0 || offset != 0 || codec != Codec.NONE || crc != 0)
                    throw badChunk(file, i, "has no data pages but says it stores data");
                if (c.zeroPages() == 0) throw badChunk(file, i, "has neither data nor zero pages");
            } else {
                if (stored == 0 || (codec == Codec.NONE && stored != raw)) {
                    throw badChunk(
                            file,
                            i,
                            "stored length " + stored + " does not fit " + raw + " raw bytes with codec "
                                    + codec.label());
                }
                if (offset < previousEnd || offset > dataEnd || stored > dataEnd - offset) {
                    throw badChunk(
                            file,
                            i,
                            "data at offset " + offset + " (" + stored + " bytes) "
                                    + (offset < previousEnd
                                            ? "overlaps the header or the chunk before it (which ends at " + previousEnd
                                                    + ")"
                                            : "runs past the end of the data area at offset " + dataEnd));
                }
                previousEnd = offset + stored;
            }
            chunks.add(c);
        }
        long[] order = new long[(int) accessCount];
        for (int i = 0; i < accessCount; i++, pos += 8) {
            long a = b.getLong(pos);
            order[i] = a;
            Region r = regionOf(laid, a);
            if (r == null || (a - r.guestAddress()) % r.pageSize() != 0) {
                throw new SnapshotFormatException(
                        file,
                        "access order entry " + i + ": guest address 0x" + Long.toHexString(a)
                                + " is not a page of any region");
            }
        }
        List<Attachment> attachments = new ArrayList<>((int) attachmentCount);
        for (int i = 0; i < attachmentCount; i++, pos += ATTACHMENT_BYTES) {
            Attachment a = decodeAttachment(file, b, pos, i, previousEnd, dataEnd);
            for (Attachment other : attachments) {
                if (other.name().equals(a.name()))
                    throw new SnapshotFormatException(file, "attachment " + i + ": a second '" + a.name() + "'");
            }
            attachments.add(a);
            previousEnd = a.offset() + a.length();
        }
        return new Manifest(chunkBytes, compression, laid, List.copyOf(chunks), order, List.copyOf(attachments));
    }

    /** The attachment entry at {@code pos}, whose data must lie in {@code [previousEnd, dataEnd)}. */
    private static Attachment decodeAttachment(
            Path file, ByteBuffer b, int pos, int index, long previousEnd, long dataEnd)
            throws SnapshotFormatException {
        String what = "attachment " + index;
        int n = 0;
        while (n < Attachment.NAME_BYTES && b.get(pos + n) != 0) n++;
        byte[] raw = new byte[n];
        b.get(pos, raw);
        String name = new String(raw, StandardCharsets.US_ASCII);
        for (int i = n; i < Attachment.NAME_BYTES; i++) {
            if (b.get(pos + i) != 0) throw new SnapshotFormatException(file, what + ": bytes after its name's end");
        }
        if (!Attachment.validName(name))
            throw new SnapshotFormatException(
                    file, what + ": name '" + name + "' is not 1 to 32 characters of a-z, 0-9, '.', '_' and '-'");
        long offset = b.getLong(pos + 32);
        long length = b.getLong(pos + 40);
        int crc = b.getInt(pos + 48);
        for (int i = 52; i < ATTACHMENT_BYTES; i++) {
            if (b.get(pos + i) != 0) throw new SnapshotFormatException(file, what + ": reserved fields are not zero");
        }
        if (length < 0 || length > Attachment.MAX_BYTES)
            throw new SnapshotFormatException(
                    file, what + " ('" + name + "'): " + length + " bytes, more than an attachment may hold (1 GiB)");
        if (offset < previousEnd || offset > dataEnd || length > dataEnd - offset) {
            throw new SnapshotFormatException(
                    file,
                    what + " ('" + name + "'): data at offset " + offset + " (" + length + " bytes) "
                            + (offset < previousEnd
                                    ? "overlaps the header, a chunk or the attachment before it (which ends at "
                                            + previousEnd + ")"
                                    : "runs past the end of the data area at offset " + dataEnd));
        }
        return new Attachment(name, offset, length, crc);
    }

    static Region regionOf(List<Region> regions, long guestAddress) {
        for (Region r : regions) {
            if (r.containsGuest(guestAddress)) return r;
        }
        return null;
    }

    private static long pageMaskBeyond(int pages, int word) {
        int from = pages - word * 64;
        if (from <= 0) return -1L;
        if (from >= 64) return 0;
        return -1L << from;
    }

    private static long expectedLength(long regions, long chunks, long access, long attachments) {
        try {
            return Math.addExact(
                    Math.addExact(
                            Math.addExact(MANIFEST_FIXED + REGION_BYTES * regions, Math.multiplyExact(chunks, (long)
                                    CHUNK_ENTRY_BYTES)),
                            Math.multiplyExact(access, 8L)),
                    ATTACHMENT_BYTES * attachments);
        } catch (ArithmeticException e) {
            return -1;
        }
    }

    /** A chunk entry of the manifest that is wrong: named by its index (the name built only for the error). */
    private static SnapshotFormatException badChunk(Path file, long index, String problem) {
        return new SnapshotFormatException(file, "chunk " + index + ": " + problem);
    }

    static int crc(ByteBuffer b) {
        CRC32C c = new CRC32C();
        c.update(b);
        return (int) c.getValue();
    }

    static String hex(int crc) {
        return String.format("0x%08x", crc);
    }
}
