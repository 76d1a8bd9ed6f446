package dev.gmem.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Region;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import java.util.zip.CRC32C;
import org.junit.jupiter.api.Test;

/** The store manifest's encoding round trip, and its decoder refusing what would mislead or exhaust it. */
class StoreManifestTest {
    private static StoreManifest sample() {
        long[] held = {0b1111, 0, 0, 0};
        long[] used = {0b0101, 0, 0, 0};
        long[] zero = {0b1010, 0, 0, 0};
        var ref = new StoreManifest.ObjectRef(new byte[32], Codec.NONE, 4 * 4096, 4 * 4096, 0);
        var chunk = new StoreManifest.StoreChunk(
                0,
                0,
                256,
                zero,
                List.of(new StoreManifest.Layer(ref, held, used)),
                new byte[2 * StoreManifest.PAGE_HASH_BYTES]);
        var chunk2 = new StoreManifest.StoreChunk(
                0,
                256,
                256,
                zero.clone(),
                List.of(new StoreManifest.Layer(ref, held.clone(), used.clone())),
                new byte[2 * StoreManifest.PAGE_HASH_BYTES]);
        return new StoreManifest(
                1 << 20,
                Codec.LZ4,
                List.of(new Region(0, 2 << 20, 4096, 0)),
                List.of(chunk, chunk2),
                new long[] {4096},
                List.of());
    }

    private static byte[] withCrc(byte[] b) {
        CRC32C c = new CRC32C();
        c.update(b, 0, b.length - 4);
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(b.length - 4, (int) c.getValue());
        return b;
    }

    @Test
    void roundTrip() throws Exception {
        StoreManifest m = StoreManifest.decode("x", sample().encode());
        assertThat(m.chunks()).hasSize(2);
        assertThat(m.chunks().getFirst().dataMap()[0]).isEqualTo(0b0101);
        assertThat(m.accessOrder()).containsExactly(4096);
        assertThat(m.objects()).hasSize(1);
        // each object's checksum survives, and is what a read checks
        byte[] bytes = new byte[4 * 4096];
        bytes[5] = 1;
        var ref = StoreManifest.ObjectRef.of(bytes, Codec.NONE, bytes.length);
        var layer = new StoreManifest.Layer(ref, new long[] {0b1111, 0, 0, 0}, new long[] {0b1111, 0, 0, 0});
        var one = new StoreManifest(
                m.windowBytes(),
                m.compression(),
                m.regions(),
                List.of(new StoreManifest.StoreChunk(
                        0, 0, 256, new long[4], List.of(layer), new byte[4 * StoreManifest.PAGE_HASH_BYTES])),
                new long[0],
                List.of());
        var back = StoreManifest.decode("x", one.encode())
                .chunks()
                .getFirst()
                .layers()
                .getFirst()
                .object();
        assertThat(back.crc32c()).isEqualTo(ref.crc32c());
        assertThat(back.matches(bytes)).isTrue();
        bytes[4096] ^= 1;
        assertThat(back.matches(bytes)).isFalse();
        assertThat(back.matches(java.util.Arrays.copyOf(bytes, 4096))).isFalse();
    }

    @Test
    void whatWouldMisleadOrExhaustItIsRefused() {
        byte[] good = sample().encode();
        // an access-order count of 2^31-1 in a small manifest: refused, not allocated
        byte[] huge = good.clone();
        ByteBuffer.wrap(huge).order(ByteOrder.LITTLE_ENDIAN).putInt(32, Integer.MAX_VALUE);
        assertThatThrownBy(() -> StoreManifest.decode("x", withCrc(huge)))
                .isInstanceOf(StoreFormatException.class)
                .hasMessageContaining("truncated");
        // a manifest of version 1 (objects without checksums): refused, saying what to do
        byte[] v1 = good.clone();
        ByteBuffer.wrap(v1).order(ByteOrder.LITTLE_ENDIAN).putInt(8, 1);
        assertThatThrownBy(() -> StoreManifest.decode("x", withCrc(v1)))
                .isInstanceOf(StoreFormatException.class)
                .hasMessageContaining("version 1")
                .hasMessageContaining("push the snapshot again");
        // an access-order entry that is no page of a region
        byte[] order = good.clone();
        ByteBuffer.wrap(order).order(ByteOrder.LITTLE_ENDIAN).putLong(order.length - 4 - 8, 3L << 20);
        assertThatThrownBy(() -> StoreManifest.decode("x", withCrc(order)))
                .hasMessageContaining("not a page of any region");
        // one object described with two sizes
        StoreManifest m = sample();
        var c2 = m.chunks().get(1);
        var other = new StoreManifest.ObjectRef(new byte[32], Codec.NONE, 3 * 4096, 3 * 4096, 0);
        var bad = new StoreManifest(
                m.windowBytes(),
                m.compression(),
                m.regions(),
                List.of(
                        m.chunks().getFirst(),
                        new StoreManifest.StoreChunk(
                                c2.region(),
                                c2.firstPage(),
                                c2.pages(),
                                c2.zeroMap(),
                                List.of(new StoreManifest.Layer(
                                        other, new long[] {0b111, 0, 0, 0}, new long[] {0b101, 0, 0, 0})),
                                new byte[2 * StoreManifest.PAGE_HASH_BYTES])),
                m.accessOrder(),
                List.of());
        assertThatThrownBy(() -> StoreManifest.decode("x", bad.encode())).hasMessageContaining("described two ways");
        // a layer that takes a page its object does not hold, or a page both data and zero
        byte[] flipped = good.clone();
        flipped[flipped.length / 2] ^= 1;
        assertThatThrownBy(() -> StoreManifest.decode("x", flipped)).hasMessageContaining("checksum mismatch");
    }
}
