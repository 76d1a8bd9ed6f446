package dev.gmem.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.fail;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Seeded random corruption of real snapshots. Whatever the damage, reading must either fail with a
 * {@link SnapshotFormatException} or give back exactly the original bytes: never another
 * exception, a crash, or wrong data.
 */
class SnapshotFuzzTest {
    static final long SIZE = 2L << 20;
    static final int ROUNDS = 150;

    @TempDir
    Path dir;

    @ParameterizedTest
    @EnumSource(Codec.class)
    void anyByteDamageIsCaughtOrHarmless(Codec codec) throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 31);
        byte[] original = Files.readAllBytes(raw);
        byte[] good = Fixtures.bytes(Fixtures.pack(raw, dir.resolve("good.snap"), codec));
        SplittableRandom r = new SplittableRandom(codec.ordinal() * 1000L + 1);
        int caught = 0;
        for (int round = 0; round < ROUNDS; round++) {
            byte[] b = good.clone();
            switch (r.nextInt(4)) {
                case 0 -> b[r.nextInt(b.length)] ^= (byte) (1 << r.nextInt(8));
                case 1 -> {
                    for (int k = 1 + r.nextInt(16); k > 0; k--) b[r.nextInt(b.length)] = (byte) r.nextInt(256);
                }
                case 2 -> b = Arrays.copyOf(b, r.nextInt(b.length));
                default -> {
                    byte[] longer = Arrays.copyOf(b, b.length + 1 + r.nextInt(8192));
                    r.nextBytes(longer);
                    System.arraycopy(b, 0, longer, 0, b.length);
                    b = longer;
                }
            }
            if (readsBackOrFails(b, original, "round " + round)) caught++;
        }
        assertThat(caught).as("most damage is detected").isGreaterThan(ROUNDS / 2);
    }

    /** Damage inside the manifest with its checksums recomputed: only the manifest's own checks stand in the way. */
    @ParameterizedTest
    @EnumSource(Codec.class)
    void manifestDamageBehindValidChecksumsIsCaughtOrHarmless(Codec codec) throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 32);
        byte[] good;
        try (RawImage image = RawImage.open(raw, Region.parse("0:1M,0x40000000:1M", 4096), 1, x -> {})) {
            SnapshotWriter.pack(image, dir.resolve("good.snap"), codec, new long[] {0x40000000L, 0x2000}, x -> {});
            good = Fixtures.bytes(dir.resolve("good.snap"));
        }
        long[] place = Fixtures.manifestPlace(good);
        SplittableRandom r = new SplittableRandom(77 + codec.ordinal());
        long[] interesting = {
            0, 1, -1, 4096, 4095, SIZE, Integer.MAX_VALUE, Long.MAX_VALUE, Long.MIN_VALUE, 0x40000000L, 1L << 32
        };
        for (int round = 0; round < ROUNDS * 2; round++) {
            byte[] b = Fixtures.editManifest(good, m -> {
                for (int k = 1 + r.nextInt(3); k > 0; k--) {
                    int at = r.nextInt(m.limit());
                    if (r.nextBoolean() && at + 8 <= m.limit()) {
                        m.putLong(at - at % 4, interesting[r.nextInt(interesting.length)] + r.nextInt(3) - 1);
                    } else {
                        m.put(at, (byte) r.nextInt(256));
                    }
                }
            });
            Path p = dir.resolve("fuzz.snap");
            Files.write(p, b);
            try (Snapshot s = Snapshot.open(p)) {
                s.verifyDeep(1, x -> {});
                SnapshotWriter.unpack(s, dir.resolve("fuzz.raw"), 1, x -> {});
            } catch (SnapshotFormatException expected) {
                // caught, with a message
                assertThat(expected.getMessage()).startsWith(p.toString());
            } catch (dev.gmem.util.HostLimitException tooBig) {
                // a consistent manifest of a guest larger than this file system allows: a host limit, named
                assertThat(tooBig.getMessage()).contains("fuzz.raw", "(EFBIG, File too large)");
            } catch (dev.gmem.linux.SyscallException full) {
                // or one this file system has not the room for
                assertThat(full.errno()).hasValue(dev.gmem.linux.Errno.ENOSPC);
            } catch (Throwable t) {
                fail("round " + round + " (manifest at " + place[0] + "): " + t, t);
            }
        }
    }

    /** True when the damage was reported as a format error; false when the snapshot still reads back exactly. */
    private boolean readsBackOrFails(byte[] damaged, byte[] original, String what) throws Exception {
        Path p = dir.resolve("fuzz.snap");
        Path out = dir.resolve("fuzz.raw");
        Files.write(p, damaged);
        try (Snapshot s = Snapshot.open(p)) {
            s.verifyDeep(1, x -> {});
            SnapshotWriter.unpack(s, out, 1, x -> {});
        } catch (SnapshotFormatException expected) {
            assertThat(expected.getMessage()).startsWith(p.toString());
            return true;
        } catch (Throwable t) {
            fail(what + ": " + t, t);
        }
        assertThat(Files.mismatch(out, dir.resolve("raw")))
                .as(what + ": undetected damage changed the data")
                .isEqualTo(-1);
        assertThat(Files.readAllBytes(out)).isEqualTo(original);
        return false;
    }

    static ByteBuffer le(byte[] b) {
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
    }
}
