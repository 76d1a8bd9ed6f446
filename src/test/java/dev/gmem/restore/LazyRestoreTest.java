package dev.gmem.restore;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Linux;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.UnsupportedFeatureException;
import dev.gmem.probe.HostProbe;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.PageCounts;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
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
import org.junit.jupiter.params.provider.ValueSource;

/** Lazy restore on real userfaultfd: faults served from the snapshot, prefetch racing readers, removals, failures. */
class LazyRestoreTest {
    static final long SIZE = 8L << 20;
    static final long P = 4096;

    @TempDir
    Path dir;

    static List<Arguments> modesAndCodecs() {
        List<Arguments> out = new ArrayList<>();
        for (dev.gmem.fault.UffdMode m : dev.gmem.fault.UffdMode.values()) {
            for (Codec c : List.of(Codec.NONE, Codec.ZSTD)) out.add(Arguments.of(m, c));
        }
        return out;
    }

    static void assume(dev.gmem.fault.UffdMode mode) {
        Host.assumeUserfaultfd();
        if (mode == dev.gmem.fault.UffdMode.MINOR) Host.assumeMinorOnMemfd();
    }

    Path snapshot(Codec codec, long seed) throws Exception {
        return Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, seed), dir.resolve("s.snap"), codec);
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("modesAndCodecs")
    void faultsAloneRestoreEveryByte(dev.gmem.fault.UffdMode mode, Codec codec) throws Exception {
        assume(mode);
        try (Snapshot s = Snapshot.open(snapshot(codec, 41));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            LazyRestore.Stats stats;
            try (LazyRestore lazy = LazyRestore.start(
                    s, d.memory(), LazyRestore.Options.defaults(mode).withPrefetch(false))) {
                RandomReaders.Result r = RandomReaders.check(lazy.memory(), s, P, 3, 1);
                assertThat(r.wrongPages()).isZero();
                assertThat(r.pages()).isEqualTo(SIZE / P);
                stats = lazy.stats();
            }
            PageCounts c = s.counts();
            assertThat(stats.faults()).isPositive();
            assertThat(stats.prefetchPages()).isZero();
            // every data page by the fault path, exactly once; zero pages and holes by ZEROPAGE
            assertThat(stats.faultPages()).isEqualTo(c.dataPages());
            assertThat(stats.zeroPages()).isEqualTo(c.zeroPages() + c.holePages());
            assertThat(stats.latency().count()).isEqualTo(stats.faults());
            assertThat(stats.latency().p50Us()).isPositive();
        }
    }

    @ParameterizedTest(name = "resident pages from {0}")
    @ValueSource(strings = {"mapping", "file"})
    void verifyOfASparseGuestReadsItsDataAndResidentPagesButOnlyASampleOfItsHoles(String residencyFrom)
            throws Exception {
        Host.assumeUserfaultfd();
        long size = 256L << 20; // 65536 pages: far more holes than the sample
        Path raw = dir.resolve("sparse.raw");
        byte[] data = new byte[(int) (64 * P)];
        new java.util.Random(5).nextBytes(data);
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(
                raw, java.nio.file.StandardOpenOption.CREATE_NEW, java.nio.file.StandardOpenOption.WRITE)) {
            for (long at : new long[] {0, 40L << 20, size - data.length}) ch.write(java.nio.ByteBuffer.wrap(data), at);
        }
        long hole = 100L << 20;
        try (dev.gmem.snapshot.RawImage s = dev.gmem.snapshot.RawImage.open(raw, null, 2, b -> {});
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING)
                                .withPrefetch(false))) {
            // a hole that something wrote into: resident, so the check must read it whether or not the sample draws it
            poke(lazy.memory(), hole + 17, (byte) 1);
            RandomReaders.Residency residency = residencyFrom.equals("file")
                    ? RandomReaders.Residency.ofFile(d.memory().fd(), size)
                    : RandomReaders.Residency.ofMapping(lazy.memory(), P);
            RandomReaders.Result r = RandomReaders.check(lazy.memory(), residency, s, P, 2, 9, lazy::checkHealthy);
            assertThat(r.dataPages()).isEqualTo(3 * 64);
            assertThat(r.residentOtherPages()).isGreaterThanOrEqualTo(1);
            assertThat(r.sampledPages()).isBetween(1L, (long) RandomReaders.ABSENT_SAMPLE);
            assertThat(r.wrongPages()).isEqualTo(1);
            assertThat(r.firstWrongGuestAddress()).isEqualTo(hole);
            byte[] resident = dev.gmem.linux.Mapping.residency(lazy.memory(), P);
            long in = 0;
            for (byte b : resident) in += b & 1;
            // the data (with fault-around), the written hole and the sample: never the other ~61000 holes
            assertThat(in)
                    .isLessThanOrEqualTo(3 * 64 + 3 * 3 * 64 + 1 + RandomReaders.ABSENT_SAMPLE)
                    .isGreaterThanOrEqualTo(3 * 64);
            assertThat(r.sampledPages())
                    .as("distinct absent pages, none of them resident")
                    .isEqualTo(RandomReaders.ABSENT_SAMPLE);

            // a stray write into another hole after the readers took their look at residency: the second look, once
            // settled, reads it
            long strayHole = 200L << 20;
            RandomReaders.Result again = RandomReaders.check(
                    lazy.memory(),
                    residency,
                    s,
                    P,
                    2,
                    10,
                    lazy::checkHealthy,
                    () -> poke(lazy.memory(), strayHole + 5, (byte) 7));
            assertThat(again.wrongPages())
                    .as("the first hole and the stray one")
                    .isEqualTo(2);
        }
    }

    @ParameterizedTest
    @EnumSource(dev.gmem.fault.UffdMode.class)
    void prefetchRacingRandomReadersNeverGivesWrongBytes(dev.gmem.fault.UffdMode mode) throws Exception {
        assume(mode);
        Path snap = snapshot(Codec.NONE, 42);
        for (int run = 0; run < 10; run++) {
            try (Snapshot s = Snapshot.open(snap);
                    Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
                LazyRestore.Options o = new LazyRestore.Options(mode, dev.gmem.fault.OnRemove.ZERO, true, 3, P, 64 * P);
                try (LazyRestore lazy = LazyRestore.start(s, d.memory(), o)) {
                    RandomReaders.Result r = RandomReaders.check(lazy.memory(), s, P, 4, run);
                    assertThat(r.wrongPages())
                            .as("run " + run + ", first wrong page at guest 0x"
                                    + Long.toHexString(r.firstWrongGuestAddress()))
                            .isZero();
                    assertThat(lazy.awaitPopulated(30_000)).isTrue();
                    LazyRestore.Stats st = lazy.stats();
                    assertThat(st.complete()).isTrue();
                    // populate-once: each data page by exactly one of the two paths
                    assertThat(st.faultPages() + st.prefetchPages())
                            .as("run " + run + ": " + st)
                            .isEqualTo(s.counts().dataPages());
                    assertThat(st.populatedMs()).isNotNull();
                }
                assertThat(d.memory().populatedPages())
                        .isGreaterThanOrEqualTo(s.counts().dataPages());
            }
        }
    }

    @ParameterizedTest
    @EnumSource(dev.gmem.fault.UffdMode.class)
    void prefetchAloneFillsDataPagesAndSkipsZeroPages(dev.gmem.fault.UffdMode mode) throws Exception {
        assume(mode);
        try (Snapshot s = Snapshot.open(snapshot(Codec.LZ4, 43));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            try (LazyRestore lazy = LazyRestore.start(s, d.memory(), LazyRestore.Options.defaults(mode))) {
                assertThat(lazy.awaitPopulated(30_000)).isTrue();
                LazyRestore.Stats st = lazy.stats();
                assertThat(st.prefetchPages()).isEqualTo(s.counts().dataPages());
                assertThat(st.faults()).isZero();
                assertThat(st.prefetchGibPerS()).isPositive();
                // unregistered now: holes read as zeros from the kernel, data is in place
                EagerRestore.verifyContents(s, d.memory(), 2);
                assertThat(RandomReaders.check(lazy.memory(), s, P, 2, 5).wrongPages())
                        .isZero();
            }
        }
    }

    @ParameterizedTest
    @EnumSource(dev.gmem.fault.OnRemove.class)
    void removedPagesAreServedAsZerosOrFetchedAgain(dev.gmem.fault.OnRemove policy) throws Exception {
        Host.assumeUserfaultfd();
        try (Snapshot s = Snapshot.open(snapshot(Codec.NONE, 44));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            LazyRestore.Options o = new LazyRestore.Options(dev.gmem.fault.UffdMode.MISSING, policy, false, 0, P, P);
            try (LazyRestore lazy = LazyRestore.start(s, d.memory(), o)) {
                long offset = firstDataPage(s);
                byte[] original = read(lazy, offset); // faults it in
                assertThat(original).isNotEqualTo(new byte[(int) P]);
                lazy.mapping().advise(offset, P, Linux.MADV_REMOVE);
                byte[] after = read(lazy, offset); // faults again
                assertThat(after).isEqualTo(policy == dev.gmem.fault.OnRemove.ZERO ? new byte[(int) P] : original);
                assertThat(lazy.stats().removes()).isEqualTo(1);
            }
        }
    }

    @Test
    void aCorruptChunkStopsTheRestoreLoudly() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = snapshot(Codec.NONE, 45);
        byte[] b = Files.readAllBytes(snap);
        long lastData;
        try (Snapshot s = Snapshot.open(snap)) {
            int i = s.chunks().size() - 1;
            while (s.chunks().get(i).dataPages() == 0) i--;
            lastData = s.chunks().get(i).offset();
        }
        b[(int) lastData + 5] ^= 1;
        Files.write(snap, b);
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            try (LazyRestore lazy =
                    LazyRestore.start(s, d.memory(), LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING))) {
                assertThatThrownBy(() -> lazy.awaitPopulated(30_000)).hasMessageContaining("checksum mismatch");
                assertThat(lazy.stats().failure()).contains("checksum mismatch");
                assertThat(lazy.stats().complete()).isFalse();
            }
        }
    }

    @Test
    void closingReleasesEverything() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = snapshot(Codec.NONE, 46);
        Leaks.Fds fds = Leaks.fds();
        long mappings = Leaks.mappingsNamed("memfd:gmem-guest") + Leaks.mappingsNamed(snap.toString());
        for (int i = 0; i < 3; i++) {
            try (Snapshot s = Snapshot.open(snap);
                    Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                    LazyRestore lazy = LazyRestore.start(
                            s, d.memory(), LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING))) {
                read(lazy, 0);
            }
        }
        assertThat(fds.opened()).isEmpty();
        assertThat(Leaks.mappingsNamed("memfd:gmem-guest") + Leaks.mappingsNamed(snap.toString()))
                .isEqualTo(mappings);
        assertThat(Thread.getAllStackTraces().keySet())
                .noneMatch(
                        t -> t.getName().startsWith("gmem-uffd") || t.getName().startsWith("gmem-prefetch"));
    }

    @Test
    void theKernelBackendSaysWhyWhereItCannotRegister() throws Exception {
        Host.assumeGuestMemfd();
        var g = HostProbe.host().guestMemfd().userfaultfd();
        try (Snapshot s = Snapshot.open(snapshot(Codec.NONE, 47));
                Destination d = Destination.anonymous(GuestMemory.Backend.KERNEL, s.size())) {
            if (g.available()) {
                try (LazyRestore lazy = LazyRestore.start(
                        s, d.memory(), LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING))) {
                    assertThat(RandomReaders.check(lazy.memory(), s, P, 2, 1).wrongPages())
                            .isZero();
                }
            } else {
                assertThatThrownBy(() -> LazyRestore.start(
                                s, d.memory(), LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING)))
                        .isInstanceOf(UnsupportedFeatureException.class)
                        .hasMessageContaining(g.reason());
            }
        }
    }

    /** One page of registered guest memory, read in C (a fault must not block a thread inside Java code). */
    static byte[] read(LazyRestore lazy, long offset) {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            MemorySegment buf = a.allocate(P);
            dev.gmem.linux.Posix.copy(lazy.memory().asSlice(offset, P), buf, P);
            return buf.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    static long firstDataPage(Snapshot s) {
        for (var c : s.chunks()) {
            for (int p = 0; p < c.pages(); p++) {
                if (c.kind(p) == PageKind.DATA) return (c.firstPage() + p) * P;
            }
        }
        throw new AssertionError("no data page");
    }

    /**
     * Writes one byte of registered guest memory from C: a Java thread blocked on a fault inside
     * Java code would hold up every safepoint, and with it the fault thread of this same JVM.
     */
    static void poke(java.lang.foreign.MemorySegment memory, long offset, byte value) {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            java.lang.foreign.MemorySegment b = a.allocate(1);
            b.set(ValueLayout.JAVA_BYTE, 0, value);
            dev.gmem.linux.Posix.copy(b, memory.asSlice(offset, 1), 1);
        }
    }
}
