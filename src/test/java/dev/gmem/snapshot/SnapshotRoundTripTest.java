package dev.gmem.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.RestoreVerificationException;
import dev.gmem.testing.Host;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

class SnapshotRoundTripTest {
    static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    static List<Arguments> backendsAndCodecs() {
        List<Arguments> out = new ArrayList<>();
        for (GuestMemory.Backend b : GuestMemory.Backend.values()) {
            for (Codec c : Codec.values()) out.add(Arguments.of(b, c));
        }
        return out;
    }

    static void assume(GuestMemory.Backend b) {
        if (b == GuestMemory.Backend.KERNEL) Host.assumeGuestMemfd();
    }

    @Test
    void synthIsDeterministicAndHasEveryKindOfPage() throws Exception {
        ImageSynth.Result a = ImageSynth.generate(dir.resolve("a"), SIZE, Fixtures.MIXED, 7, 2, b -> {});
        ImageSynth.generate(dir.resolve("b"), SIZE, Fixtures.MIXED, 7, 1, b -> {});
        ImageSynth.generate(dir.resolve("c"), SIZE, Fixtures.MIXED, 8, 2, b -> {});
        assertThat(Files.mismatch(dir.resolve("a"), dir.resolve("b"))).isEqualTo(-1);
        assertThat(Files.mismatch(dir.resolve("a"), dir.resolve("c"))).isNotEqualTo(-1);
        assertThat(a.holePages()).isPositive();
        assertThat(a.zeroPages()).isPositive();
        assertThat(a.duplicatePages()).isPositive();
        assertThat(a.textPages()).isPositive();
        assertThat(a.randomPages()).isPositive();
        assertThat(a.holePages() + a.zeroPages() + a.dataPages()).isEqualTo(SIZE / 4096);
        // the raw reader finds the same holes (SEEK_HOLE) and zero pages (by reading)
        try (RawImage raw = RawImage.open(dir.resolve("a"), null, 2, b -> {})) {
            PageCounts c = raw.counts();
            assertThat(c.holePages()).isEqualTo(a.holePages());
            assertThat(c.zeroPages()).isEqualTo(a.zeroPages());
            assertThat(c.dataPages()).isEqualTo(a.dataPages());
        }
    }

    @ParameterizedTest
    @EnumSource(Codec.class)
    void packThenUnpackIsByteExactAndSparse(Codec codec) throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 3);
        Path snap = Fixtures.pack(raw, dir.resolve("s"), codec);
        Path back = dir.resolve("back");
        try (Snapshot s = Snapshot.open(snap)) {
            assertThat(s.counts().storedBytes()).isLessThanOrEqualTo(s.counts().dataBytes());
            if (codec != Codec.NONE)
                assertThat(s.counts().storedBytes()).isLessThan(s.counts().dataBytes());
            SnapshotWriter.unpack(s, back, 2, b -> {});
        }
        assertThat(Files.size(back)).isEqualTo(SIZE);
        assertThat(Files.mismatch(raw, back)).isEqualTo(-1);
        try (RawImage orig = RawImage.open(raw, null, 1, b -> {});
                RawImage again = RawImage.open(back, null, 1, b -> {})) {
            // zero pages and holes both come back as holes
            assertThat(again.counts().holePages())
                    .isEqualTo(orig.counts().holePages() + orig.counts().zeroPages());
            assertThat(again.counts().dataPages()).isEqualTo(orig.counts().dataPages());
        }
        assertThat(dev.gmem.testing.Leaks.partials(dir)).isEmpty();
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("backendsAndCodecs")
    void restoreIsByteExact(GuestMemory.Backend backend, Codec codec) throws Exception {
        assume(backend);
        Path raw = Fixtures.raw(dir, "raw", SIZE, 4);
        Path snap = Fixtures.pack(raw, dir.resolve("s"), codec);
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(backend, s.size())) {
            EagerRestore.Report r = EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(true), b -> {});
            assertThat(r.verified()).isTrue();
            assertThat(r.bytesRestored()).isEqualTo(s.counts().dataBytes());
            // only data pages were populated: zero pages and holes cost nothing
            try (HostMapping m = d.memory().map(0, s.size())) {
                byte[] resident = m.residency(0, s.size());
                long n = 0;
                for (byte x : resident) n += x & 1;
                assertThat(n).isEqualTo(s.counts().dataPages());
            }
            assertSameBytes(raw, d.memory());
        }
    }

    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void rawFilesRestoreDirectly(GuestMemory.Backend backend) throws Exception {
        assume(backend);
        Path raw = Fixtures.raw(dir, "raw", SIZE, 5);
        try (PageSource src = PageSources.open(raw, null, 2, b -> {});
                Destination d = Destination.anonymous(backend, src.size())) {
            assertThat(src.format()).isEqualTo("raw");
            EagerRestore.restore(src, d.memory(), EagerRestore.Options.automatic(true), b -> {});
            assertSameBytes(raw, d.memory());
        }
    }

    @Test
    void regionsAreLaidEndToEndAndKept() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 6);
        List<Region> regions = Region.parse("0:3M,0x100000000:5M", 4096);
        Path snap = dir.resolve("s");
        try (RawImage image = RawImage.open(raw, regions, 2, b -> {})) {
            SnapshotWriter.pack(image, snap, Codec.LZ4, new long[] {0x100000000L, 0x1000}, b -> {});
        }
        try (Snapshot s = Snapshot.open(snap)) {
            assertThat(s.regions())
                    .containsExactly(new Region(0, 3 << 20, 4096, 0), new Region(0x100000000L, 5 << 20, 4096, 3 << 20));
            assertThat(s.accessOrder()).containsExactly(0x100000000L, 0x1000);
            SnapshotWriter.unpack(s, dir.resolve("back"), 2, b -> {});
            try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
                EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(true), b -> {});
                assertSameBytes(raw, d.memory());
            }
        }
        assertThat(Files.mismatch(raw, dir.resolve("back"))).isEqualTo(-1);
    }

    @Test
    void exportAppearsOnlyWhenComplete() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 9);
        Path shm = Files.createTempDirectory(Path.of("/dev/shm"), "gmem-test");
        try {
            Path target = shm.resolve("guest.mem");
            try (Snapshot s = Snapshot.open(Fixtures.pack(raw, dir.resolve("s"), Codec.NONE));
                    Destination d = Destination.export(target, s.size())) {
                EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(true), b -> {});
                assertThat(Files.exists(target)).isFalse();
                assertThat(dev.gmem.testing.Leaks.partials(shm)).hasSize(1);
                d.commit();
            }
            assertThat(dev.gmem.testing.Leaks.partials(shm)).isEmpty();
            assertThat(Files.mismatch(raw, target)).isEqualTo(-1);
            assertThatThrownBy(() -> Destination.export(target, SIZE)).hasMessageContaining("already exists");
        } finally {
            try (var files = Files.list(shm)) {
                for (Path p : files.toList()) Files.delete(p);
            }
            Files.delete(shm);
        }
    }

    @Test
    void verificationNamesTheFirstDifferingPage() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 10);
        try (Snapshot s = Snapshot.open(Fixtures.pack(raw, dir.resolve("s"), Codec.NONE));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), b -> {});
            Chunk c = s.chunks().stream()
                    .filter(x -> x.dataPages() > 0)
                    .skip(2)
                    .findFirst()
                    .orElseThrow();
            int page = 0;
            while (c.kind(page) != PageKind.DATA) page++;
            long at = (c.firstPage() + page) * 4096;
            try (HostMapping m = d.memory().map(at, 4096)) {
                m.setByte(100, (byte) (m.getByte(100) ^ 1));
            }
            assertThatThrownBy(() -> EagerRestore.verifyContents(s, d.memory(), 2))
                    .isInstanceOf(RestoreVerificationException.class)
                    .hasMessageContaining("page at guest 0x" + Long.toHexString(at))
                    .hasMessageContaining("byte +100");
        }
    }

    @Test
    void verificationCatchesAZeroPageThatIsNotZero() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 11);
        try (Snapshot s = Snapshot.open(Fixtures.pack(raw, dir.resolve("s"), Codec.NONE));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), b -> {});
            Chunk c = s.chunks().stream()
                    .filter(x -> x.zeroPages() > 0)
                    .findFirst()
                    .orElseThrow();
            int page = 0;
            while (c.kind(page) != PageKind.ZERO) page++;
            long at = (c.firstPage() + page) * 4096;
            try (HostMapping m = d.memory().map(at, 4096)) {
                m.setByte(7, (byte) 1);
            }
            assertThatThrownBy(() -> EagerRestore.verifyContents(s, d.memory(), 2))
                    .isInstanceOf(RestoreVerificationException.class)
                    .hasMessageContaining("0x" + Long.toHexString(at));
        }
    }

    /** Compares every byte of guest memory with the raw file, through one mapping (not gmem's own check). */
    static void assertSameBytes(Path raw, GuestMemory memory) throws Exception {
        byte[] expected = Files.readAllBytes(raw);
        try (HostMapping m = memory.map(0, expected.length)) {
            assertThat(MemorySegment.mismatch(
                            MemorySegment.ofArray(expected), 0, expected.length, m.segment(), 0, expected.length))
                    .isEqualTo(-1);
        }
    }

    /** A 64 TiB sparse raw file with two data pages: scanning and packing it costs what its data costs, not its size. */
    @Test
    void aHugeSparseRawFileIsScannedByItsDataAlone() throws Exception {
        Path shm = Path.of("/dev/shm");
        Path big = Files.createTempFile(Files.isDirectory(shm) ? shm : dir, "gmem-huge", ".raw");
        try {
            try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(big.toFile(), "rw")) {
                try {
                    f.setLength(64L << 40);
                } catch (java.io.IOException e) {
                    org.junit.jupiter.api.Assumptions.abort(
                            "this file system cannot hold a 64 TiB sparse file: " + e.getMessage());
                }
                f.seek(0);
                f.write(new byte[] {1, 2, 3});
                f.seek((40L << 40) + 4096);
                f.write(new byte[] {4, 5, 6});
            }
            long t0 = System.nanoTime();
            try (RawImage image = RawImage.open(big, null, 2, b -> {})) {
                assertThat(image.chunks()).hasSize(2);
                assertThat(image.counts().dataPages()).isEqualTo(2);
                Path snap = dir.resolve("huge.snap");
                SnapshotWriter.pack(image, snap, Codec.NONE, new long[0], b -> {});
                try (Snapshot s = Snapshot.open(snap)) {
                    assertThat(s.size()).isEqualTo(64L << 40);
                    assertThat(s.counts().dataPages()).isEqualTo(2);
                }
            }
            // a correctness bound, not a benchmark: a scan that walked every window took 8-16 s and 4 GiB of heap
            assertThat(System.nanoTime() - t0).isLessThan(30_000_000_000L);
        } finally {
            Files.deleteIfExists(big);
        }
    }
}
