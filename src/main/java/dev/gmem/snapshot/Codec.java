package dev.gmem.snapshot;

import com.github.luben.zstd.Zstd;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.util.Locale;
import net.jpountz.lz4.LZ4Exception;
import net.jpountz.lz4.LZ4Factory;

/** How a chunk's data is stored. Each chunk is compressed on its own, so one chunk can be read without the others. */
public enum Codec {
    NONE(0),
    /** zstd (level 3) through zstd-jni. */
    ZSTD(1),
    /** LZ4 block format through lz4-java. */
    LZ4(2);

    private static final int ZSTD_LEVEL = 3;

    private final int id;

    Codec(int id) {
        this.id = id;
    }

    /** The byte that names this codec in the manifest. */
    public int id() {
        return id;
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static Codec ofId(int id) {
        for (Codec c : values()) {
            if (c.id == id) return c;
        }
        return null;
    }

    public static Codec parse(String s) {
        for (Codec c : values()) {
            if (c.label().equalsIgnoreCase(s.strip())) return c;
        }
        throw new IllegalArgumentException("unknown compression '" + s + "': use zstd, lz4 or none");
    }

    /** The most bytes {@link #compress} may produce for {@code rawLength} bytes. */
    public long bound(long rawLength) {
        return switch (this) {
            case NONE -> rawLength;
            case ZSTD -> Zstd.compressBound(rawLength);
            case LZ4 -> lz4().fastCompressor().maxCompressedLength((int) rawLength);
        };
    }

    /**
     * Compresses {@code source} into {@code target} (at least {@link #bound} bytes, native), and
     * returns the compressed length.
     */
    public int compress(MemorySegment source, MemorySegment target) {
        ByteBuffer src = source.asByteBuffer();
        ByteBuffer dst = target.asByteBuffer();
        return switch (this) {
            case NONE -> throw new IllegalStateException("NONE does not compress");
            case ZSTD ->
                Math.toIntExact(
                        Zstd.compressDirectByteBuffer(dst, 0, dst.capacity(), src, 0, src.capacity(), ZSTD_LEVEL));
            case LZ4 -> lz4().fastCompressor().compress(src, 0, src.capacity(), dst, 0, dst.capacity());
        };
    }

    /**
     * Decompresses {@code source} into {@code target}, which must come out exactly
     * {@code target.byteSize()} bytes long.
     *
     * @throws IllegalArgumentException when the data is malformed or of another length, with what the codec said
     */
    public void decompress(MemorySegment source, MemorySegment target) {
        ByteBuffer src = source.asByteBuffer();
        ByteBuffer dst = target.asByteBuffer();
        long n;
        try {
            n = switch (this) {
                case NONE -> throw new IllegalStateException("NONE does not decompress");
                case ZSTD -> {
                    long size = Zstd.getFrameContentSize(src);
                    if (size != dst.capacity())
                        throw new IllegalArgumentException("zstd frame declares " + size + " bytes");
                    yield Zstd.decompressDirectByteBuffer(dst, 0, dst.capacity(), src, 0, src.capacity());
                }
                case LZ4 -> lz4().safeDecompressor().decompress(src, 0, src.capacity(), dst, 0, dst.capacity());
            };
        } catch (LZ4Exception | com.github.luben.zstd.ZstdException e) {
            throw new IllegalArgumentException(label() + " data is malformed: " + e.getMessage(), e);
        }
        if (n != dst.capacity())
            throw new IllegalArgumentException(
                    label() + " data decompressed to " + n + " bytes, expected " + dst.capacity());
    }

    private static LZ4Factory lz4() {
        return Lz4Holder.FACTORY;
    }

    private static final class Lz4Holder {
        static final LZ4Factory FACTORY = LZ4Factory.fastestInstance();
    }
}
