package dev.gmem.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Random;
import java.util.SequencedMap;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Format version 2: named bytes carried beside guest memory, under their own checksums. */
class SnapshotAttachmentTest {
    static final long SIZE = 4L << 20;

    @TempDir
    Path dir;

    private SequencedMap<String, byte[]> sample() {
        byte[] state = new byte[300_000];
        new Random(5).nextBytes(state);
        SequencedMap<String, byte[]> a = new LinkedHashMap<>();
        a.put("qemu", "{\"version\":\"7.2.22\"}".getBytes(StandardCharsets.UTF_8));
        a.put("qemu.device-state", state);
        a.put("empty", new byte[0]);
        return a;
    }

    private Path packWith(SequencedMap<String, byte[]> attachments, Codec codec) throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 3);
        Path out = dir.resolve("with.snap");
        try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
            SnapshotWriter.pack(image, out, codec, new long[0], attachments, b -> {});
        }
        return out;
    }

    private static int version(Path p) throws Exception {
        return ByteBuffer.wrap(Files.readAllBytes(p))
                .order(ByteOrder.LITTLE_ENDIAN)
                .getInt(8);
    }

    @Test
    void attachmentsComeBackWholeAndMakeTheFileVersionTwo() throws Exception {
        SequencedMap<String, byte[]> in = sample();
        Path snap = packWith(in, Codec.LZ4);
        assertThat(version(snap)).isEqualTo(SnapshotFormat.VERSION_ATTACHMENTS);
        try (Snapshot s = Snapshot.open(snap)) {
            assertThat(s.manifest().attachments())
                    .extracting(Attachment::name)
                    .containsExactly(in.keySet().toArray(String[]::new));
            for (var e : in.entrySet()) assertThat(s.attachment(e.getKey())).isEqualTo(e.getValue());
            assertThat(s.attachment("absent")).isNull();
            s.verify(2, b -> {});
            assertThat(SnapshotInfo.of(s).formatVersion()).isEqualTo(2);
            assertThat(SnapshotInfo.of(s).attachments()).hasSize(3);
        }
        // the guest memory is what it would be without them
        Path plain = Fixtures.pack(dir.resolve("raw"), dir.resolve("plain.snap"), Codec.LZ4);
        assertThat(version(plain)).isEqualTo(SnapshotFormat.VERSION);
        Path a = dir.resolve("a.raw");
        Path b = dir.resolve("b.raw");
        try (Snapshot s = Snapshot.open(snap);
                Snapshot t = Snapshot.open(plain)) {
            SnapshotWriter.unpack(s, a, 2, x -> {});
            SnapshotWriter.unpack(t, b, 2, x -> {});
        }
        assertThat(Files.mismatch(a, b)).isEqualTo(-1);
    }

    @Test
    void aDamagedAttachmentIsNamedAndVerifyFails() throws Exception {
        Path snap = packWith(sample(), Codec.NONE);
        long offset;
        try (Snapshot s = Snapshot.open(snap)) {
            offset = s.manifest().attachment("qemu.device-state").offset();
        }
        byte[] file = Files.readAllBytes(snap);
        file[(int) offset + 1234] ^= 0x40;
        Files.write(snap, file);
        try (Snapshot s = Snapshot.open(snap)) {
            assertThat(s.attachment("qemu")).isNotNull();
            assertThatThrownBy(() -> s.attachment("qemu.device-state"))
                    .isInstanceOf(SnapshotFormatException.class)
                    .hasMessageContaining("attachment 'qemu.device-state'")
                    .hasMessageContaining("checksum mismatch");
            assertThatThrownBy(() -> s.verify(2, b -> {})).hasMessageContaining("qemu.device-state");
        }
    }

    @Test
    void entriesThatBreakTheRulesAreRefused() throws Exception {
        Path snap = packWith(sample(), Codec.NONE);
        byte[] file = Files.readAllBytes(snap);
        int entries = Fixtures.manifestPlace(file)[1] > 0
                ? (int) Fixtures.manifestPlace(file)[1] - 3 * SnapshotFormat.ATTACHMENT_BYTES
                : 0;
        // a name outside the alphabet
        assertRefused(Fixtures.editManifest(file, m -> m.put(entries, (byte) 'Q')), "is not 1 to 32 characters");
        // a second entry of the same name
        assertRefused(
                Fixtures.editManifest(file, m -> {
                    for (int i = 0; i < Attachment.NAME_BYTES; i++)
                        m.put(entries + SnapshotFormat.ATTACHMENT_BYTES + i, m.get(entries + i));
                }),
                "a second 'qemu'");
        // data overlapping the chunks
        assertRefused(
                Fixtures.editManifest(file, m -> m.putLong(entries + 32, SnapshotFormat.HEADER_SIZE)), "overlaps");
        // data past the data area
        assertRefused(Fixtures.editManifest(file, m -> m.putLong(entries + 40, 1 << 30)), "runs past");
        assertRefused(
                Fixtures.editManifest(file, m -> m.putLong(entries + 40, Long.MAX_VALUE / 2)),
                "more than an attachment may hold");
        // the second attachment's data over the first's
        assertRefused(
                Fixtures.editManifest(
                        file, m -> m.putLong(entries + SnapshotFormat.ATTACHMENT_BYTES + 32, m.getLong(entries + 32))),
                "overlaps the header, a chunk or the attachment before it");
        // reserved bytes
        assertRefused(Fixtures.editManifest(file, m -> m.put(entries + 60, (byte) 1)), "reserved");
        // a version 1 file may not have any
        byte[] v1 = file.clone();
        ByteBuffer.wrap(v1).order(ByteOrder.LITTLE_ENDIAN).putInt(8, SnapshotFormat.VERSION);
        Fixtures.fixChecksums(v1);
        assertRefused(v1, "reserved fields are not zero");
        // a version this gmem does not know
        byte[] v3 = file.clone();
        ByteBuffer.wrap(v3).order(ByteOrder.LITTLE_ENDIAN).putInt(8, 3);
        Fixtures.fixChecksums(v3);
        assertRefused(v3, "unknown snapshot format version 3 (this gmem reads versions 1 and 2)");
    }

    @Test
    void badNamesAreRefusedAtPackTime() {
        SequencedMap<String, byte[]> bad = new LinkedHashMap<>();
        bad.put("Device State", new byte[1]);
        assertThatThrownBy(() -> packWith(bad, Codec.NONE))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'Device State'");
    }

    private void assertRefused(byte[] file, String message) throws Exception {
        Path p = dir.resolve("edited.snap");
        Files.write(p, file);
        assertThatThrownBy(() -> Snapshot.open(p).close())
                .isInstanceOf(SnapshotFormatException.class)
                .hasMessageContaining(message);
    }
}
