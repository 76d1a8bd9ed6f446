package dev.gmem.fault;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.linux.UnixSockets;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.LazyRestore;
import dev.gmem.restore.RandomReaders;
import dev.gmem.restore.RestoreFailedException;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.ChunkChecksumException;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import dev.gmem.testing.UffdPeer;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The fault engine on real userfaultfd: failures that release blocked threads, EAGAIN during a
 * removal, ENOENT after unregistering, removals racing the prefetcher, multi-region sources, a
 * provider that delivers later, close while faults are in flight, and a foreign target served for
 * a separate process.
 */
class FaultEngineTest {
    static final long P = 4096;
    static final long SIZE = 8L << 20;
    /** Two regions, as a VMM with memory on both sides of a gap has: 5 MiB at 0 and 3 MiB at 4 GiB. */
    static final String REGIONS = "0:5M,0x100000000:3M";

    @TempDir
    Path dir;

    static void assume(UffdMode mode) {
        Host.assumeUserfaultfd();
        if (mode == UffdMode.MINOR) Host.assumeMinorOnMemfd();
    }

    /** A two-region raw image (regions end to end) and its snapshot; the access order names a few pages of the second region first. */
    Path[] twoRegions(long seed, Codec codec) throws Exception {
        Path raw = Fixtures.raw(dir, "two.raw", SIZE, seed);
        Path snap = dir.resolve("two.snap");
        List<Region> regions = Region.endToEnd(Region.parse(REGIONS, P));
        try (RawImage image = RawImage.open(raw, regions, 2, b -> {})) {
            long[] order = {0x100000000L + 5 * P, 0x100000000L + 9 * P, 7 * P};
            SnapshotWriter.pack(image, snap, codec, order, b -> {});
        }
        return new Path[] {raw, snap};
    }

    /** The first data page's offset at or after {@code from}. */
    static long dataPage(Snapshot s, long from) {
        long o = new SourcePages(s).nextData(from);
        assertThat(o).isNotNegative();
        return o;
    }

    /** One page of registered memory, read in C (a fault must not block a thread inside Java code). */
    static byte[] read(MemorySegment memory, long offset) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(P);
            Posix.copy(memory.asSlice(offset, P), buf, P);
            return buf.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    static byte[] page(byte[] image, long offset) {
        return Arrays.copyOfRange(image, (int) offset, (int) (offset + P));
    }

    static Thread reader(MemorySegment memory, long offset, AtomicReference<byte[]> into) {
        return Thread.ofPlatform().name("test-reader").start(() -> into.set(read(memory, offset)));
    }

    @Test
    void aFaultPathFailureReleasesABlockedReaderWithinASecondAndNamesTheChunk() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 11), dir.resolve("s.snap"), Codec.NONE);
        long victim;
        int chunk;
        try (Snapshot s = Snapshot.open(snap)) {
            victim = dataPage(s, 3L << 20);
            chunk = new dev.gmem.snapshot.PageIndex(s).atFileOffset(victim).index();
            byte[] b = Files.readAllBytes(snap);
            b[(int) s.chunks().get(chunk).offset() + 7] ^= 1;
            Files.write(snap, b);
        }
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(UffdMode.MISSING).withPrefetch(false))) {
            AtomicReference<byte[]> got = new AtomicReference<>();
            Thread t = reader(lazy.memory(), victim, got);
            t.join(1000);
            assertThat(t.isAlive())
                    .as("the reader blocked on the corrupt chunk is released within a second")
                    .isFalse();
            assertThatThrownBy(lazy::checkHealthy)
                    .isInstanceOf(RestoreFailedException.class)
                    .hasMessageContaining("checksum mismatch")
                    .hasMessageContaining("chunk " + chunk)
                    .hasMessageContaining("guest 0x")
                    .cause()
                    .isInstanceOfSatisfying(
                            ChunkChecksumException.class,
                            e -> assertThat(e.chunk()).isEqualTo(chunk));
            // readers that check the restore's health stop with its error instead of reporting wrong pages
            assertThatThrownBy(() -> RandomReaders.check(lazy.memory(), s, P, 2, 3, lazy::checkHealthy))
                    .isInstanceOf(RestoreFailedException.class)
                    .hasMessageContaining("checksum mismatch");
            assertThat(lazy.engine().target().registered())
                    .as("released: unregistered")
                    .isFalse();
        }
    }

    /**
     * A MISSING engine without prefetch over a fresh snapshot of {@code SIZE}, whose provider holds
     * the fault thread's first fetch at a gate; {@code image} is the raw image's bytes.
     */
    record HeldFault(
            byte[] image,
            Snapshot snapshot,
            Destination destination,
            TestProviders.Gated gated,
            OwnedTarget target,
            FaultEngine engine)
            implements AutoCloseable {
        static HeldFault start(Path dir, long seed) throws Exception {
            Path raw = Fixtures.raw(dir, "raw", SIZE, seed);
            Snapshot s = Snapshot.open(Fixtures.pack(raw, dir.resolve("s.snap"), Codec.NONE));
            Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
            TestProviders.Gated gated =
                    new TestProviders.Gated(new SourcePages(s), TestProviders.Gated.named("gmem-uffd"));
            OwnedTarget target = OwnedTarget.register(d.memory(), s.size(), UffdMode.MISSING);
            FaultEngine engine = FaultEngine.start(
                    target, gated, new FaultEngine.Options(OnRemove.ZERO, 0, OnFailure.RELEASE, null));
            return new HeldFault(Files.readAllBytes(raw), s, d, gated, target, engine);
        }

        MemorySegment memory() {
            return target.mapping().segment();
        }

        @Override
        public void close() throws java.io.IOException {
            gated.open();
            engine.close();
            destination.close();
            snapshot.close();
        }
    }

    @Test
    void eagainWhileARemovalIsPendingIsRetriedAfterTheRemovalIsRead() throws Exception {
        Host.assumeUserfaultfd();
        try (HeldFault h = HeldFault.start(dir, 12)) {
            long a = dataPage(h.snapshot(), 0);
            long b = dataPage(h.snapshot(), 4L << 20);
            AtomicReference<byte[]> got = new AtomicReference<>();
            Thread r = reader(h.memory(), a, got);
            h.gated().awaitReached(); // the fault thread holds A's fetch
            Thread remover = Thread.ofPlatform().name("test-remover").start(() -> {
                try {
                    h.target().mapping().advise(b, P, Linux.MADV_REMOVE); // waits until its REMOVE event is read
                } catch (SyscallException e) {
                    throw new AssertionError(e);
                }
            });
            remover.join(200);
            assertThat(remover.isAlive())
                    .as("MADV_REMOVE waits for the handler to read its event")
                    .isTrue();
            h.gated().open(); // A's COPY now meets the pending removal: EAGAIN, drain, retry
            r.join(5000);
            remover.join(5000);
            assertThat(r.isAlive() || remover.isAlive()).isFalse();
            assertThat(got.get()).isEqualTo(page(h.image(), a));
            FaultStats.Counts c = h.engine().stats().counts();
            assertThat(c.retries()).as("the COPY was retried after EAGAIN").isPositive();
            assertThat(c.removes()).isEqualTo(1);
            assertThat(read(h.memory(), b)).as("a removed page reads as zeros").isEqualTo(new byte[(int) P]);
            assertThat(h.engine().failure()).isNull();
        }
    }

    @Test
    void enoentAfterUnregisteringWakesTheThreadWithoutAnError() throws Exception {
        Host.assumeUserfaultfd();
        try (HeldFault h = HeldFault.start(dir, 13)) {
            long a = dataPage(h.snapshot(), 0);
            AtomicReference<byte[]> got = new AtomicReference<>();
            Thread r = reader(h.memory(), a, got);
            h.gated().awaitReached();
            // another path put the page in the file (through the unregistered guest view), then the range was
            // unregistered
            MemorySegment.copy(
                    MemorySegment.ofArray(page(h.image(), a)),
                    0,
                    h.destination().memory().guestView(),
                    a,
                    P);
            h.target().unregister();
            h.gated().open(); // A's COPY now fails with ENOENT
            r.join(5000);
            assertThat(r.isAlive()).isFalse();
            assertThat(got.get()).isEqualTo(page(h.image(), a));
            // unregistering woke the reader already; the fault thread finishes its COPY (ENOENT) on its own time
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
            while (h.engine().stats().faults() == 0 && h.engine().failure() == null && System.nanoTime() < deadline)
                Thread.sleep(5);
            assertThat(h.engine().failure())
                    .as("ENOENT after unregistering is not an error")
                    .isNull();
            assertThat(h.engine().stats().counts().faults()).isEqualTo(1);
        }
    }

    @ParameterizedTest
    @EnumSource(UffdMode.class)
    void aRemovalDuringPrefetchIsNeverOverwrittenWithOldContents(UffdMode mode) throws Exception {
        assume(mode);
        Path[] two = twoRegions(14, Codec.LZ4);
        try (Snapshot s = Snapshot.open(two[1]);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            TestProviders.Gated gated =
                    new TestProviders.Gated(new SourcePages(s), TestProviders.Gated.named("gmem-prefetch"));
            OwnedTarget target = OwnedTarget.register(d.memory(), s.size(), mode);
            try (FaultEngine engine = FaultEngine.start(
                    target,
                    gated,
                    new FaultEngine.Options(
                            OnRemove.ZERO, 3, OnFailure.RELEASE, new FaultEngine.Prefetch(P, 16 * P)))) {
                gated.awaitReached(); // the prefetcher waits at its first fetch
                assertThatThrownBy(engine::graduate)
                        .as("gmem's own memory never graduates: close releases it")
                        .isInstanceOf(IllegalStateException.class)
                        .hasMessageContaining("only memory of another process");
                long a = dataPage(s, 5L << 20); // in the second region, among the pages of the access order
                long b = dataPage(
                        s,
                        6L << 20); // never touched before its removal: only the removed bit keeps the prefetcher off it
                MemorySegment memory = target.mapping().segment();
                assertThat(read(memory, a)).isNotEqualTo(new byte[(int) P]); // faulted in
                target.mapping().advise(a, P, Linux.MADV_REMOVE);
                target.mapping().advise(b, P, Linux.MADV_REMOVE);
                assertThat(read(memory, a)).as("removed: zeros").isEqualTo(new byte[(int) P]);
                gated.open();
                assertThat(engine.awaitPopulated(30_000)).isTrue();
                assertThat(read(memory, a))
                        .as("the prefetcher skipped the removed page")
                        .isEqualTo(new byte[(int) P]);
                assertThat(read(memory, b))
                        .as("the prefetcher skipped the removed, never touched page")
                        .isEqualTo(new byte[(int) P]);
                RandomReaders.Result r = RandomReaders.check(memory, s, P, 2, 7, engine::checkHealthy);
                assertThat(r.wrongPages())
                        .as("only the removed pages differ from the snapshot")
                        .isEqualTo(2);
                assertThat(engine.stats().counts().removes()).isEqualTo(2);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(UffdMode.class)
    void aMultiRegionSourceRestoresEveryByteWithPrefetchRacingReaders(UffdMode mode) throws Exception {
        assume(mode);
        Path[] two = twoRegions(15, Codec.ZSTD);
        for (int run = 0; run < 3; run++) {
            try (Snapshot s = Snapshot.open(two[1]);
                    Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                    LazyRestore lazy = LazyRestore.start(
                            s, d.memory(), new LazyRestore.Options(mode, OnRemove.ZERO, true, 3, P, 32 * P))) {
                assertThat(s.regions()).hasSize(2);
                RandomReaders.Result r = RandomReaders.check(lazy.memory(), s, P, 3, run, lazy::checkHealthy);
                assertThat(r.wrongPages()).as("run " + run).isZero();
                assertThat(lazy.awaitPopulated(30_000)).isTrue();
                LazyRestore.Stats st = lazy.stats();
                assertThat(st.faultPages() + st.prefetchPages())
                        .as(st.toString())
                        .isEqualTo(s.counts().dataPages());
            }
        }
    }

    @Test
    void aProviderThatDeliversLaterOnItsOwnThreadServesEveryFault() throws Exception {
        Host.assumeUserfaultfd();
        Path[] two = twoRegions(16, Codec.NONE);
        try (Snapshot s = Snapshot.open(two[1]);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                TestProviders.Later later = new TestProviders.Later(new SourcePages(s))) {
            OwnedTarget target = OwnedTarget.register(d.memory(), s.size(), UffdMode.MISSING);
            try (FaultEngine engine = FaultEngine.start(
                    target, later, new FaultEngine.Options(OnRemove.ZERO, 2, OnFailure.RELEASE, null))) {
                RandomReaders.Result r =
                        RandomReaders.check(target.mapping().segment(), s, P, 3, 5, engine::checkHealthy);
                assertThat(r.wrongPages()).isZero();
                FaultStats.Counts c = engine.stats().counts();
                assertThat(c.faultPages()).isEqualTo(s.counts().dataPages());
                assertThat(c.latency().count()).isEqualTo(c.faults());
                assertThat(engine.failure()).isNull();
            }
        }
    }

    @Test
    void aFailureReportedLaterByAProviderThreadReleasesTheReader() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 20), dir.resolve("s.snap"), Codec.NONE);
        long victim;
        try (Snapshot s = Snapshot.open(snap)) {
            victim = dataPage(s, 2L << 20);
            byte[] b = Files.readAllBytes(snap);
            b[
                    (int) s.chunks()
                                    .get(new dev.gmem.snapshot.PageIndex(s)
                                            .atFileOffset(victim)
                                            .index())
                                    .offset()
                            + 3] ^= 1;
            Files.write(snap, b);
        }
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                TestProviders.Later later = new TestProviders.Later(new SourcePages(s))) {
            OwnedTarget target = OwnedTarget.register(d.memory(), s.size(), UffdMode.MISSING);
            try (FaultEngine engine = FaultEngine.start(
                    target, later, new FaultEngine.Options(OnRemove.ZERO, 0, OnFailure.RELEASE, null))) {
                Thread t = reader(target.mapping().segment(), victim, new AtomicReference<>());
                t.join(1000);
                assertThat(t.isAlive()).as("released within a second").isFalse();
                assertThatThrownBy(engine::checkHealthy)
                        .isInstanceOf(FaultEngineFailedException.class)
                        .hasMessageContaining("checksum mismatch")
                        .cause()
                        .isInstanceOf(ChunkChecksumException.class);
            }
        }
    }

    @Test
    void closeWhileFaultsAreInFlightNeverThrowsAndLeavesNothing() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 17), dir.resolve("s.snap"), Codec.ZSTD);
        Leaks.Fds fds = Leaks.fds();
        long mappings = Leaks.mappingsNamed("memfd:gmem-guest");
        for (int i = 0; i < 10; i++) {
            try (Snapshot s = Snapshot.open(snap);
                    Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(UffdMode.MISSING).withPrefetch(i % 2 == 0));
                List<Thread> readers = new ArrayList<>();
                for (int t = 0; t < 4; t++) {
                    long seed = t * 31L + i;
                    readers.add(Thread.ofPlatform().name("test-reader-" + t).start(() -> {
                        try {
                            RandomReaders.check(lazy.memory(), s, P, 1, seed);
                        } catch (Throwable expected) {
                            // the memory goes away under the reader: it stops, as it must
                        }
                    }));
                }
                Thread.sleep(i % 4);
                lazy.close(); // with readers blocked on faults and inside native calls on the mapping
                for (Thread t : readers) {
                    t.join(5000);
                    assertThat(t.isAlive()).as("reader released by close").isFalse();
                }
            }
        }
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (Leaks.mappingsNamed("memfd:gmem-guest") != mappings && System.nanoTime() < deadline) Thread.sleep(10);
        assertThat(Leaks.mappingsNamed("memfd:gmem-guest")).isEqualTo(mappings);
        assertThat(fds.opened()).isEmpty();
        assertThat(Thread.getAllStackTraces().keySet())
                .noneMatch(t -> t.isAlive()
                        && (t.getName().startsWith("gmem-uffd") || t.getName().startsWith("gmem-prefetch")));
    }

    @ParameterizedTest(name = "prefetch {0}")
    @ValueSource(booleans = {false, true})
    void aForeignTargetServesMemoryThatAnotherProcessRegisteredAndSent(boolean prefetch) throws Exception {
        Host.assumeUserfaultfd();
        serveAPeer(twoRegions(18, Codec.ZSTD), (5L << 20) + "," + (3L << 20), prefetch);
    }

    @Test
    void aForeignTargetServesHugetlbPagesWhole() throws Exception {
        Host.assumeUserfaultfd();
        Path free = Path.of("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
        long pages = Files.exists(free) ? Long.parseLong(Files.readString(free).strip()) : 0;
        org.junit.jupiter.api.Assumptions.assumeTrue(
                pages >= 2,
                () -> "needs 2 free 2 MiB huge pages, and " + free + " says " + pages
                        + " (an administrator can reserve some in /proc/sys/vm/nr_hugepages)");
        Path raw = Fixtures.raw(dir, "huge.raw", SIZE, 21);
        Path snap = dir.resolve("huge.snap");
        try (RawImage image =
                RawImage.open(raw, Region.endToEnd(Region.parse("0:4M,0x100000000:4M:2M", P)), 2, b -> {})) {
            SnapshotWriter.pack(image, snap, Codec.LZ4, new long[0], b -> {});
        }
        serveAPeer(new Path[] {raw, snap}, (4L << 20) + "," + (4L << 20) + "h", true);
    }

    /**
     * Starts the C peer with regions {@code sizes}, serves its faults from {@code two[1]} through a
     * {@link ForeignTarget}, and checks every byte it read against the raw image {@code two[0]}, and
     * that the 16 pages it discarded from page 100 of its first region read as zeros.
     */
    private void serveAPeer(Path[] two, String sizes, boolean prefetch) throws Exception {
        Path peer = UffdPeer.binary();
        byte[] image = Files.readAllBytes(two[0]);
        Leaks.Fds fds = Leaks.fds();
        Path socket = dir.resolve("peer.sock");
        long removeFirst = 100;
        long removePages = 16;
        try (Snapshot s = Snapshot.open(two[1]);
                Fd listener = UnixSockets.listen(socket, 1)) {
            Process child = new ProcessBuilder(
                            peer.toString(),
                            socket.toString(),
                            sizes,
                            "3",
                            Long.toString(removeFirst),
                            Long.toString(removePages))
                    .redirectError(dir.resolve("peer.err").toFile())
                    .start();
            try {
                dev.gmem.fc.Handshake h = UffdPeer.receive(listener, 10_000, s.size());
                // the regions as the handler reads them
                List<ForeignRegion> regions = h.regions();
                assertThat(regions).hasSize(2);
                Userfaultfd uffd = Userfaultfd.adopt(h.uffd(), UffdFeature.EVENT_REMOVE.bit());
                assertThat(uffd.via()).isEqualTo(Userfaultfd.Source.RECEIVED);
                assertThatThrownBy(() -> uffd.handshake(0))
                        .as("the sender already made the handshake")
                        .isInstanceOfSatisfying(
                                SyscallException.class,
                                e -> assertThat(e.is(Errno.EINVAL)).isTrue());
                ForeignTarget target = ForeignTarget.of(uffd, regions);
                FaultEngine.Options o = new FaultEngine.Options(
                        OnRemove.ZERO, 3, OnFailure.HOLD, prefetch ? FaultEngine.Prefetch.DEFAULT : null);
                try (FaultEngine engine = FaultEngine.start(target, new SourcePages(s), o)) {
                    byte[] out;
                    try (InputStream in = child.getInputStream()) {
                        out = in.readNBytes((int) (SIZE + removePages * P));
                    }
                    assertThat(child.waitFor(30, TimeUnit.SECONDS))
                            .as("the peer finishes")
                            .isTrue();
                    assertThat(child.exitValue())
                            .as(Files.readString(dir.resolve("peer.err")))
                            .isZero();
                    assertThat(out).hasSize((int) (SIZE + removePages * P));
                    long wrong = 0;
                    for (long off = 0; off < SIZE; off += P) {
                        if (!Arrays.equals(out, (int) off, (int) (off + P), image, (int) off, (int) (off + P))) wrong++;
                    }
                    assertThat(wrong)
                            .as("pages of the other process that differ from the source")
                            .isZero();
                    byte[] removed = Arrays.copyOfRange(out, (int) SIZE, out.length);
                    assertThat(removed)
                            .as("pages it discarded read as zeros")
                            .isEqualTo(new byte[(int) (removePages * P)]);
                    FaultStats.Counts c = engine.stats().counts();
                    assertThat(engine.failure()).isNull();
                    assertThat(c.removes()).isEqualTo(1);
                    assertThat(c.faultPages() + c.prefetchPages())
                            .as("each data page populated once: " + c)
                            .isEqualTo(s.counts().dataPages());
                    if (!prefetch) {
                        assertThat(c.prefetchPages()).isZero();
                        // without a prefetcher the engine never knows every data page to be in place: no graduation
                        assertThatThrownBy(engine::graduate)
                                .isInstanceOf(IllegalStateException.class)
                                .hasMessageContaining("not every data page is in place");
                        assertThat(target.registered()).isTrue();
                    }
                    assertThat(c.zeroPages())
                            .isGreaterThanOrEqualTo(
                                    s.counts().zeroPages() + s.counts().holePages());
                }
            } finally {
                child.destroyForcibly();
                child.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertThat(fds.opened())
                .as("the received descriptor is closed with the target")
                .isEmpty();
    }

    /**
     * Graduation: once every data page is in place, the foreign regions are unregistered, and the
     * other process goes on without this one. Its discard (MADV_DONTNEED) then raises no event here,
     * and the range reads zeros from its own kernel.
     */
    @Test
    void aForeignTargetGraduatesOnceEveryDataPageIsInPlace() throws Exception {
        Host.assumeUserfaultfd();
        Path[] two = twoRegions(23, Codec.NONE);
        byte[] image = Files.readAllBytes(two[0]);
        Path socket = dir.resolve("graduate.sock");
        long removeFirst = 10;
        long removePages = 8;
        try (Snapshot s = Snapshot.open(two[1]);
                Fd listener = UnixSockets.listen(socket, 1)) {
            ProcessBuilder pb = new ProcessBuilder(
                            UffdPeer.binary().toString(),
                            socket.toString(),
                            (5L << 20) + "," + (3L << 20),
                            "2",
                            Long.toString(removeFirst),
                            Long.toString(removePages))
                    .redirectError(dir.resolve("peer.err").toFile());
            pb.environment().put("UFFD_PEER_PAUSE", "1");
            Process child = pb.start();
            try {
                dev.gmem.fc.Handshake h = UffdPeer.receive(listener, 10_000, s.size());
                // the regions as the handler reads them
                List<ForeignRegion> regions = h.regions();
                ForeignTarget target =
                        ForeignTarget.of(Userfaultfd.adopt(h.uffd(), UffdFeature.EVENT_REMOVE.bit()), regions);
                FaultEngine.Options o =
                        new FaultEngine.Options(OnRemove.ZERO, 3, OnFailure.HOLD, FaultEngine.Prefetch.DEFAULT);
                try (FaultEngine engine = FaultEngine.start(target, new SourcePages(s), o)) {
                    InputStream in = child.getInputStream();
                    byte[] first = in.readNBytes((int) SIZE);
                    assertThat(first)
                            .as("the peer read its memory, served here")
                            .isEqualTo(image);
                    assertThat(engine.awaitPopulated(30_000)).isTrue();
                    engine.graduate();
                    assertThat(target.registered()).isFalse();
                    FaultStats.Counts before = engine.stats().counts();
                    child.getOutputStream().write('g');
                    child.getOutputStream().flush();
                    byte[] removed = in.readNBytes((int) (removePages * P));
                    assertThat(child.waitFor(30, TimeUnit.SECONDS))
                            .as("the peer finishes")
                            .isTrue();
                    assertThat(child.exitValue())
                            .as(Files.readString(dir.resolve("peer.err")))
                            .isZero();
                    assertThat(removed)
                            .as("the discarded range reads zeros, from the peer's own kernel")
                            .isEqualTo(new byte[(int) (removePages * P)]);
                    FaultStats.Counts after = engine.stats().counts();
                    assertThat(after.removes())
                            .as("no event reaches a graduated handler")
                            .isEqualTo(before.removes())
                            .isZero();
                    assertThat(after.faults()).isEqualTo(before.faults());
                    assertThat(engine.failure()).isNull();
                }
            } finally {
                child.destroyForcibly();
                child.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void aForeignTargetRefusesReleaseAndMisalignedRegions() throws Exception {
        Host.assumeUserfaultfd();
        try (Snapshot s = Snapshot.open(twoRegions(19, Codec.NONE)[1])) {
            Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK);
            try {
                uffd.handshake(0);
                assertThatThrownBy(() -> ForeignTarget.of(uffd, List.of(new ForeignRegion(0x10000 + 1, P, 0, P))))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("multiples of its page size");
                assertThatThrownBy(() -> ForeignTarget.of(
                                uffd,
                                List.of(
                                        new ForeignRegion(0x10000, 2 * P, 0, P),
                                        new ForeignRegion(0x11000, P, 2 * P, P))))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("overlap");
                assertThatThrownBy(() -> ForeignTarget.of(uffd, List.of(new ForeignRegion(0x10000, P, P, P))))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("end to end");
                Userfaultfd forking = Userfaultfd.adopt(
                        uffd.fd().dup(), UffdFeature.mask(UffdFeature.EVENT_REMOVE, UffdFeature.EVENT_FORK));
                try {
                    assertThatThrownBy(() -> ForeignTarget.of(forking, List.of(new ForeignRegion(0x10000, P, 0, P))))
                            .isInstanceOf(IllegalArgumentException.class)
                            .hasMessageContaining("EVENT_FORK");
                } finally {
                    forking.closeQuietly();
                }
                ForeignTarget t = ForeignTarget.of(uffd, List.of(new ForeignRegion(0x7f0000000000L, 5L << 20, 0, P)));
                assertThatThrownBy(() -> FaultEngine.start(t, new SourcePages(s), FaultEngine.Options.local()))
                        .isInstanceOf(IllegalArgumentException.class)
                        .hasMessageContaining("never unregistered");
                ForeignTarget big =
                        ForeignTarget.of(uffd, List.of(new ForeignRegion(0x7f0000000000L, 16L << 20, 0, P)));
                assertThatThrownBy(() -> FaultEngine.start(
                                big,
                                new SourcePages(s),
                                new FaultEngine.Options(OnRemove.ZERO, 0, OnFailure.HOLD, null)))
                        .isInstanceOf(TargetMismatchException.class);
            } finally {
                uffd.closeQuietly();
            }
        }
    }
}
