package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Fd;
import dev.gmem.linux.UnixSockets;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import dev.gmem.testing.UffdPeer;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The handler daemon in this JVM, VM-like peers in their own processes: sessions served to graduation, bad clients dropped, the socket kept tidy. */
class FcHandlerTest {
    static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    /** A handler serving {@code snap} on {@code socket}, its reports and log lines collected; close stops it, then closes the snapshot. */
    record Served(Snapshot snapshot, FcHandler handler, List<Session.Report> reports, List<String> log)
            implements AutoCloseable {
        static Served start(Path snap, Path socket, FcHandler.Options options) throws java.io.IOException {
            Snapshot s = Snapshot.open(snap);
            List<Session.Report> reports = new CopyOnWriteArrayList<>();
            List<String> log = new CopyOnWriteArrayList<>();
            try {
                return new Served(
                        s,
                        FcHandler.start(socket, new SourcePages(s), s.size(), options, reports::add, log::add),
                        reports,
                        log);
            } catch (java.io.IOException | RuntimeException e) {
                s.close();
                throw e;
            }
        }

        /** Waits up to 30 s until {@code list} has an element. */
        static void awaitAny(List<?> list) throws InterruptedException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (list.isEmpty() && System.nanoTime() < deadline) Thread.sleep(10);
        }

        @Override
        public void close() throws java.io.IOException {
            handler.stop(Duration.ZERO);
            snapshot.close();
        }
    }

    @Test
    void vmsAreServedToGraduationAndABadClientDoesNotStopTheOthers() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 31);
        byte[] image = Files.readAllBytes(raw);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.NONE);
        Path socket = dir.resolve("fc.sock");
        List<Session.Report> reports = new CopyOnWriteArrayList<>();
        List<String> log = new CopyOnWriteArrayList<>();
        Leaks.Fds fds = Leaks.fds();
        List<Process> vms = new ArrayList<>();
        try (Snapshot s = Snapshot.open(snap)) {
            FcHandler handler = FcHandler.start(
                    socket, new SourcePages(s), s.size(), FcHandler.Options.defaults(), reports::add, log::add);
            try {
                assertThat(Files.getPosixFilePermissions(socket))
                        .containsExactlyInAnyOrder(
                                java.nio.file.attribute.PosixFilePermission.OWNER_READ,
                                java.nio.file.attribute.PosixFilePermission.OWNER_WRITE);
                assertThatThrownBy(() -> FcHandler.start(
                                socket, new SourcePages(s), s.size(), FcHandler.Options.defaults(), r -> {}, l -> {}))
                        .hasMessageContaining("another handler listens there");
                // a client that sends JSON that is no handshake, without a descriptor, then goes
                try (Fd bad = UnixSockets.connect(socket);
                        Arena arena = Arena.ofConfined()) {
                    UnixSockets.send(bad, arena.allocateFrom("not json").asSlice(0, 8), List.of());
                }
                for (int i = 0; i < 2; i++) {
                    vms.add(UffdPeer.startPaused(
                            socket, (5L << 20) + "," + (3L << 20), 2, dir.resolve("vm-" + i + ".err")));
                }
                for (int i = 0; i < 2; i++) {
                    InputStream in = vms.get(i).getInputStream();
                    assertThat(Arrays.mismatch(in.readNBytes((int) SIZE), image))
                            .as("VM %d read its snapshot's bytes", i)
                            .isEqualTo(-1);
                }
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (reports.size() < 2 && System.nanoTime() < deadline) Thread.sleep(10);
                assertThat(reports)
                        .extracting(Session.Report::end)
                        .containsOnly(Session.End.GRADUATED)
                        .hasSize(2);
                assertThat(reports)
                        .extracting(Session.Report::pid)
                        .containsExactlyInAnyOrder(
                                (int) vms.get(0).pid(), (int) vms.get(1).pid());
                for (Process vm : vms) {
                    UffdPeer.proceed(vm);
                    assertThat(vm.waitFor(30, TimeUnit.SECONDS))
                            .as("a graduated VM runs on without the handler")
                            .isTrue();
                    assertThat(vm.exitValue()).isZero();
                }
                assertThat(log)
                        .as("the bad client, in one line")
                        .anySatisfy(l -> assertThat(l).contains("handshake refused"));
            } finally {
                assertThat(handler.stop(Duration.ofSeconds(10)))
                        .as("no session left unfinished")
                        .isEmpty();
            }
            assertThat(socket).as("the socket is removed on exit").doesNotExist();
        } finally {
            for (Process vm : vms) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertThat(fds.opened()).isEmpty();
        assertThat(Thread.getAllStackTraces().keySet())
                .noneMatch(t -> t.isAlive() && t.getName().startsWith("gmem-fc-"));
    }

    /** A session that fails (a chunk of the snapshot damaged): by default its VMM is killed through its pidfd; with KEEP it is left frozen. */
    @org.junit.jupiter.params.ParameterizedTest
    @org.junit.jupiter.params.provider.EnumSource(FcHandler.OnFailure.class)
    void aFailedSessionIsHandledByThePolicy(FcHandler.OnFailure policy) throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 41), dir.resolve("s.snap"), Codec.NONE);
        byte[] b = Files.readAllBytes(snap);
        b[dev.gmem.snapshot.SnapshotFormat.HEADER_SIZE + 123] ^=
                0x40; // inside the first chunk's stored data: its checksum fails
        Files.write(snap, b);
        Process vm = null;
        try (Served h = Served.start(
                snap,
                dir.resolve("fail.sock"),
                new FcHandler.Options(Duration.ofSeconds(5), Session.Prefetch.ALL, 3, policy, java.util.Set.of()))) {
            vm = UffdPeer.startPaused(h.handler().socket(), (5L << 20) + "," + (3L << 20), 2, dir.resolve("vm.err"));
            Served.awaitAny(h.reports());
            assertThat(h.reports()).hasSize(1);
            assertThat(h.reports().get(0).end()).isEqualTo(Session.End.FAILED);
            assertThat(h.reports().get(0).reason()).contains("checksum");
            if (policy == FcHandler.OnFailure.KILL) {
                assertThat(vm.waitFor(10, TimeUnit.SECONDS))
                        .as("the VMM is killed")
                        .isTrue();
                assertThat(vm.exitValue()).as("by SIGKILL").isEqualTo(128 + 9);
                assertThat(h.log())
                        .anySatisfy(l -> assertThat(l).contains("its VMM killed (SIGKILL through its pidfd)"));
            } else {
                assertThat(vm.waitFor(500, TimeUnit.MILLISECONDS))
                        .as("the VM is left frozen, alive")
                        .isFalse();
                assertThat(h.log()).anySatisfy(l -> assertThat(l).contains("left frozen (--on-failure keep)"));
            }
        } finally {
            if (vm != null) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /** --allow-uid: a VMM of another user is refused by its SO_PEERCRED uid, in one line, and never served. */
    @Test
    void aVmmOfAnotherUserIsRefused() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        int me = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 47), dir.resolve("s.snap"), Codec.NONE);
        Process vm = null;
        try (Served h = Served.start(
                snap,
                dir.resolve("uid.sock"),
                new FcHandler.Options(
                        Duration.ofSeconds(5),
                        Session.Prefetch.ALL,
                        3,
                        FcHandler.OnFailure.KILL,
                        java.util.Set.of(me + 1)))) {
            vm = UffdPeer.startPaused(h.handler().socket(), (5L << 20) + "," + (3L << 20), 2, dir.resolve("vm.err"));
            Served.awaitAny(h.log());
            assertThat(h.log()).singleElement().asString().contains("uid " + me + " is not allowed (--allow-uid)");
            assertThat(h.reports()).as("no session was served").isEmpty();
        } finally {
            if (vm != null) {
                vm.destroyForcibly(); // never served: it waits on its first fault
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    @Test
    void aStaleSocketIsReplacedAndAnythingElseThereIsRefused() throws Exception {
        Path socket = dir.resolve("stale.sock");
        UnixSockets.listen(socket, 1).close(); // a socket nobody listens on any more
        assertThat(socket).exists();
        Path file = Files.writeString(dir.resolve("plain"), "not a socket");
        try (Snapshot s = Snapshot.open(
                Fixtures.pack(Fixtures.raw(dir, "raw", 1L << 20, 3), dir.resolve("s.snap"), Codec.NONE))) {
            FcHandler h = FcHandler.start(
                    socket, new SourcePages(s), s.size(), FcHandler.Options.defaults(), r -> {}, l -> {});
            assertThat(h.stop(Duration.ZERO)).isEmpty();
            assertThatThrownBy(() -> FcHandler.start(
                            file, new SourcePages(s), s.size(), FcHandler.Options.defaults(), r -> {}, l -> {}))
                    .hasMessageContaining("is not a socket");
            assertThat(Files.readString(file)).isEqualTo("not a socket");
        }
    }

    /**
     * {@code --record-access}: served on demand, two VMs that each read all of their memory leave
     * a record of every data page once, in a form the packer takes as an access order; a snapshot
     * packed with it prefetches those pages first.
     */
    @Test
    void theRecordedAccessOrderListsEveryPageTheVmsFaultedInOnce() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 59);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.ZSTD);
        Path record = dir.resolve("access.txt");
        List<Process> vms = new ArrayList<>();
        long dataPages;
        try (Snapshot s = Snapshot.open(snap);
                AccessRecorder recorder = AccessRecorder.create(record, s.regions(), s.size(), l -> {})) {
            dataPages = s.counts().dataPages();
            FcHandler handler = FcHandler.start(
                    dir.resolve("rec.sock"),
                    new SourcePages(s),
                    s.size(),
                    new FcHandler.Options(
                                    Duration.ofSeconds(5),
                                    Session.Prefetch.OFF,
                                    3,
                                    FcHandler.OnFailure.KILL,
                                    java.util.Set.of())
                            .withRecorder(recorder),
                    r -> {},
                    l -> {});
            try {
                for (int i = 0; i < 2; i++) {
                    Process vm = UffdPeer.startPaused(
                            handler.socket(), Long.toString(SIZE), 2, dir.resolve("rec-" + i + ".err"));
                    vms.add(vm);
                    vm.getInputStream().readNBytes((int) SIZE);
                    UffdPeer.proceed(vm);
                    assertThat(vm.waitFor(30, TimeUnit.SECONDS)).isTrue();
                }
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (handler.liveSessions() > 0 && System.nanoTime() < deadline) Thread.sleep(10);
            } finally {
                handler.stop(Duration.ZERO);
            }
            assertThat(recorder.recorded()).isEqualTo(dataPages);
        }
        List<String> lines = Files.readAllLines(record);
        assertThat(lines.getFirst()).startsWith("# gmem fc-handler --record-access");
        List<Long> pages = lines.stream()
                .skip(1)
                .map(l -> Long.parseUnsignedLong(l.substring(2), 16))
                .toList();
        assertThat(pages).hasSize((int) dataPages).doesNotHaveDuplicates();
        assertThat(pages).allMatch(a -> a % 4096 == 0 && a < SIZE);
        // the packer takes it
        dev.gmem.testing.GmemProcess.Result packed = dev.gmem.testing.GmemProcess.run(
                Duration.ofSeconds(60),
                dir,
                "snapshot",
                "pack",
                raw.toString(),
                "-o",
                dir.resolve("ordered.snap").toString(),
                "--access-order",
                record.toString());
        assertThat(packed.exit()).as(packed.toString()).isZero();
        try (Snapshot ordered = Snapshot.open(dir.resolve("ordered.snap"))) {
            assertThat(ordered.accessOrder()).hasSize((int) dataPages);
            assertThat(ordered.accessOrder()[0]).isEqualTo(pages.getFirst());
        }
        for (Process vm : vms) vm.destroyForcibly();
    }

    /** {@code --metrics}: each VM is a {@code session} series, scraped over HTTP, with its final values after it ends. */
    @Test
    void eachVmIsASessionInTheMetrics() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 67);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.LZ4);
        dev.gmem.metrics.Metrics metrics = new dev.gmem.metrics.Metrics();
        Process vm = null;
        try (dev.gmem.metrics.MetricsServer server =
                        dev.gmem.metrics.MetricsServer.start(metrics, "127.0.0.1:0", false);
                Served h = Served.start(
                        snap,
                        dir.resolve("metrics.sock"),
                        FcHandler.Options.defaults().withMetrics(metrics))) {
            vm = UffdPeer.startPaused(h.handler().socket(), Long.toString(SIZE), 2, dir.resolve("vm.err"));
            vm.getInputStream().readNBytes((int) SIZE);
            Served.awaitAny(h.reports());
            Session.Report r = h.reports().getFirst();
            assertThat(r.end()).isEqualTo(Session.End.GRADUATED);
            java.util.Map<String, Double> m = dev.gmem.metrics.MetricsTest.scrape(server.url());
            String id = Long.toString(r.id());
            assertThat(m.get("gmem_pages_total{path=fault,session=" + id + "}")
                            + m.get("gmem_pages_total{path=prefetch,session=" + id + "}"))
                    .as("every data page, by faults or the prefetch: %s", m)
                    .isEqualTo((double) (r.counts().faultPages() + r.counts().prefetchPages()))
                    .isPositive();
            assertThat(m.get("gmem_faults_total{session=" + id + "}"))
                    .as("(a fault read just before graduation is served, with no page, after the report)")
                    .isGreaterThanOrEqualTo((double) r.counts().faults());
            assertThat(m.get("gmem_sessions")).as("ended: no longer counted").isZero();
            UffdPeer.proceed(vm);
            assertThat(vm.waitFor(30, TimeUnit.SECONDS)).isTrue();
        } finally {
            if (vm != null) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /**
     * A VMM backed by 2 MiB hugetlbfs pages (as Firecracker's huge-page backend registers them),
     * served from a raw memory file whose region says so: every huge page is copied whole, and a
     * discarded one reads as zeros. Needs a pool of free 2 MiB pages (vm.nr_hugepages).
     */
    @Test
    void aVmOfHugePagesIsServedWholePagesAndZerosAfterADiscard() throws Exception {
        Host.assumeUserfaultfd();
        long free = dev.gmem.probe.HostProbe.hugePagesOfHost().hugetlb().stream()
                .filter(p -> p.pageSizeKib() == 2048)
                .mapToLong(dev.gmem.probe.HostReport.HugetlbPool::free)
                .sum();
        org.junit.jupiter.api.Assumptions.assumeTrue(
                free >= 8, "needs 8 free 2 MiB hugetlbfs pages (vm.nr_hugepages); this host has " + free);
        UffdPeer.binary(); // built, or the test skipped with the reason
        long size = 8L << 20;
        Path raw = Fixtures.raw(dir, "raw", size, 79);
        byte[] image = Files.readAllBytes(raw);
        List<dev.gmem.snapshot.Region> huge =
                dev.gmem.snapshot.Region.parse("0:8M:2M", dev.gmem.snapshot.Region.MIN_PAGE);
        Process vm = null;
        try (dev.gmem.snapshot.PageSource source = dev.gmem.snapshot.PageSources.open(raw, huge, 1, x -> {})) {
            List<Session.Report> reports = new CopyOnWriteArrayList<>();
            List<String> log = new CopyOnWriteArrayList<>();
            FcHandler handler = FcHandler.start(
                    dir.resolve("huge.sock"),
                    new SourcePages(source),
                    source.size(),
                    FcHandler.Options.defaults(),
                    reports::add,
                    log::add);
            try {
                // the discard of the second huge page (page 512 of 4 KiB) comes after the memory is read
                ProcessBuilder pb = new ProcessBuilder(
                                UffdPeer.binary().toString(),
                                handler.socket().toString(),
                                size + "h",
                                "2",
                                "512",
                                "512")
                        .redirectError(dir.resolve("huge.err").toFile());
                vm = pb.start();
                byte[] out = vm.getInputStream().readAllBytes();
                assertThat(vm.waitFor(30, TimeUnit.SECONDS)).isTrue();
                assertThat(vm.exitValue())
                        .as(Files.readString(dir.resolve("huge.err")))
                        .isZero();
                assertThat(out).hasSize((int) (size + (2L << 20)));
                assertThat(Arrays.mismatch(Arrays.copyOf(out, (int) size), image))
                        .isEqualTo(-1);
                assertThat(Arrays.copyOfRange(out, (int) size, out.length))
                        .as("the discarded huge page reads as zeros")
                        .containsOnly((byte) 0);
                assertThat(log).isEmpty();
            } finally {
                handler.stop(Duration.ofSeconds(10));
            }
        } finally {
            if (vm != null) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /**
     * A balloon inflating while the prefetch fills the VM: pages discarded meanwhile (each a
     * UFFD_EVENT_REMOVE, which makes every copy fail with EAGAIN until it is read) read as zeros,
     * and every other data page as the file, after graduation too. A prefetch that gave up the
     * rest of a piece on EAGAIN left data pages to the kernel's zeros once the VM graduated.
     */
    @Test
    void pagesDiscardedDuringThePrefetchReadZerosAndNoDataPageIsLeftOut() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        long size = 64L << 20;
        Path raw = Fixtures.raw(dir, "raw", size, 83);
        try (Served h = Served.start(
                Fixtures.pack(raw, dir.resolve("s.snap"), Codec.NONE),
                dir.resolve("balloon.sock"),
                FcHandler.Options.defaults())) {
            for (int round = 0; round < 3; round++) {
                ProcessBuilder pb = new ProcessBuilder(
                                UffdPeer.binary().toString(),
                                h.handler().socket().toString(),
                                Long.toString(size),
                                "0")
                        .redirectError(dir.resolve("balloon.err").toFile());
                pb.environment().put("UFFD_PEER_DISCARDS", "3000");
                pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
                Process vm = pb.start();
                try {
                    assertThat(vm.waitFor(60, TimeUnit.SECONDS)).isTrue();
                    String out =
                            new String(vm.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII);
                    assertThat(vm.exitValue())
                            .as(Files.readString(dir.resolve("balloon.err")))
                            .isZero();
                    assertThat(out).as("round %d", round).contains(" wrong=0 ");
                } finally {
                    vm.destroyForcibly();
                    vm.waitFor(10, TimeUnit.SECONDS);
                }
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (h.reports().size() < 3 && System.nanoTime() < deadline) Thread.sleep(10);
            assertThat(h.reports()).hasSize(3);
            assertThat(h.log()).isEmpty();
        }
    }
}
