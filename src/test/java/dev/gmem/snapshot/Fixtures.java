package dev.gmem.snapshot;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.function.Consumer;

/** Small real images and snapshots on disk, and ways to damage them. */
public final class Fixtures {
    public static final ImageSynth.Mix MIXED = new ImageSynth.Mix(0.2, 0.3, 0.1);

    private Fixtures() {}

    /** A synthetic raw image with every kind of page. */
    public static Path raw(Path dir, String name, long size, long seed) throws IOException {
        Path p = dir.resolve(name);
        ImageSynth.generate(p, size, MIXED, seed, 2, b -> {});
        return p;
    }

    public static Path pack(Path raw, Path out, Codec codec) throws IOException {
        try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
            SnapshotWriter.pack(image, out, codec, new long[0], b -> {});
        }
        return out;
    }

    public static byte[] bytes(Path p) throws IOException {
        return Files.readAllBytes(p);
    }

    /** Where the manifest is, from a sound header. */
    public static long[] manifestPlace(byte[] file) {
        ByteBuffer b = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        return new long[] {b.getLong(16), b.getLong(24)};
    }

    /**
     * Edits the manifest of {@code file} in place through {@code edit} (a little-endian buffer over
     * the manifest alone), then fixes the manifest and header checksums, so that only the
     * manifest's own checks can catch the edit.
     */
    public static byte[] editManifest(byte[] file, Consumer<ByteBuffer> edit) {
        byte[] out = file.clone();
        long[] m = manifestPlace(out);
        ByteBuffer manifest =
                ByteBuffer.wrap(out, (int) m[0], (int) m[1]).slice().order(ByteOrder.LITTLE_ENDIAN);
        edit.accept(manifest);
        fixChecksums(out);
        return out;
    }

    /** Recomputes the header's own CRC only, leaving whatever else the header says. */
    public static void fixHeaderChecksum(byte[] file) {
        ByteBuffer h = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        h.putInt(
                SnapshotFormat.HEADER_CRC_AT,
                SnapshotFormat.crc(ByteBuffer.wrap(file, 0, SnapshotFormat.HEADER_CRC_AT)));
    }

    /** Recomputes the manifest CRC in the header and the header's own CRC. */
    public static void fixChecksums(byte[] file) {
        ByteBuffer h = ByteBuffer.wrap(file).order(ByteOrder.LITTLE_ENDIAN);
        long off = h.getLong(16);
        long len = h.getLong(24);
        if (off >= 0 && len >= 0 && off + len <= file.length) {
            h.putInt(32, SnapshotFormat.crc(ByteBuffer.wrap(file, (int) off, (int) len)));
        }
        h.putInt(
                SnapshotFormat.HEADER_CRC_AT,
                SnapshotFormat.crc(ByteBuffer.wrap(file, 0, SnapshotFormat.HEADER_CRC_AT)));
    }

    /** Offset of chunk entry {@code i} inside the manifest. */
    public static int chunkEntry(ByteBuffer manifest, int i) {
        int regions = manifest.getInt(16);
        return SnapshotFormat.MANIFEST_FIXED
                + SnapshotFormat.REGION_BYTES * regions
                + SnapshotFormat.CHUNK_ENTRY_BYTES * i;
    }
}
