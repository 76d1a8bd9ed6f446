package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Pidfds;
import dev.gmem.linux.Poller;
import dev.gmem.linux.UnixSockets;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import dev.gmem.testing.UffdPeer;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sessions: several VM-like processes served at once from one snapshot through one shared provider, each to graduation. */
class SessionTest {
    static final long SIZE = 8L << 20;
    static final long P = 4096;
    static final int VMS = 3;

    /** A session for the next VM to connect to {@code listener}, and its VMM's pidfd, which close closes. */
    record Accepted(Session session, Fd pidfd) implements AutoCloseable {
        static Accepted of(
                long id, Fd listener, dev.gmem.fault.PageProvider provider, long size, Session.Prefetch prefetch)
                throws java.io.IOException {
            assertThat(new Poller(Linux.POLLIN, listener).poll(10_000))
                    .as("a VM connects")
                    .isPositive();
            try (Fd conn = UnixSockets.accept(listener)) {
                UnixSockets.PeerCredentials peer = UnixSockets.peerCredentials(conn);
                Fd pidfd = Pidfds.open(peer.pid());
                try {
                    Handshake h = Handshake.receive(conn, Duration.ofSeconds(10), size);
                    return new Accepted(Session.start(id, h, peer, pidfd, provider, prefetch, 3, null), pidfd);
                } catch (java.io.IOException | RuntimeException e) {
                    pidfd.closeQuietly();
                    throw e;
                }
            }
        }

        @Override
        public void close() {
            pidfd.closeQuietly();
        }
    }

    @TempDir
    Path dir;

    @Test
    void threeVmsFromOneSnapshotAreServedAndGraduate() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 29);
        byte[] image = Files.readAllBytes(raw);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.ZSTD);
        Leaks.Fds fds = Leaks.fds();
        Path socket = dir.resolve("fc.sock");
        List<Process> children = new ArrayList<>();
        List<Session> sessions = new ArrayList<>();
        List<Accepted> accepted = new ArrayList<>();
        try (Snapshot s = Snapshot.open(snap);
                Fd listener = UnixSockets.listen(socket, VMS)) {
            SourcePages shared = new SourcePages(s); // one for every VM of this snapshot
            for (int i = 0; i < VMS; i++) {
                // each VM stays alive, after reading its memory, until told to go on
                children.add(UffdPeer.startPaused(
                        socket, (5L << 20) + "," + (3L << 20), 2, dir.resolve("peer-" + i + ".err")));
            }
            for (int i = 0; i < VMS; i++) {
                accepted.add(Accepted.of(i, listener, shared, s.size(), Session.Prefetch.ALL));
                sessions.add(accepted.getLast().session());
            }
            // each VM reads all of its memory, served by its session
            InputStream[] outs = new InputStream[VMS];
            for (int i = 0; i < VMS; i++) {
                outs[i] = children.get(i).getInputStream();
                byte[] out = outs[i].readNBytes((int) SIZE);
                assertThat(Arrays.mismatch(out, image))
                        .as("VM %d read its snapshot's bytes", i)
                        .isEqualTo(-1);
            }
            // the last VM exits before its session graduates: its memory went with it
            children.get(VMS - 1).destroyForcibly();
            assertThat(children.get(VMS - 1).waitFor(10, TimeUnit.SECONDS)).isTrue();
            java.util.Set<Long> pids = new java.util.HashSet<>();
            for (Session session : sessions) {
                Session.Report r = session.await(Duration.ofSeconds(30));
                // the VMs connect in any order: the one killed is known by its pid, not by its session's number
                boolean exited = r.pid() == children.get(VMS - 1).pid();
                assertThat(r.end())
                        .as(String.valueOf(r))
                        .isEqualTo(exited ? Session.End.VMM_EXITED : Session.End.GRADUATED);
                pids.add((long) r.pid());
                if (!exited) {
                    // (not for the VM killed meanwhile: a copy racing its address space's teardown may land on a page
                    // the teardown had just freed, so its counters say nothing about its memory, which is gone)
                    assertThat(r.counts().faultPages() + r.counts().prefetchPages())
                            .as("each data page of VM %d put in place once: %s", r.id(), r.counts())
                            .isEqualTo(s.counts().dataPages());
                    assertThat(r.graduatedMs()).isPositive();
                }
            }
            assertThat(pids)
                    .as("one session for each VM")
                    .containsExactlyInAnyOrderElementsOf(
                            children.stream().map(Process::pid).toList());
            // the graduated VMs go on without the handler and end
            for (int i = 0; i < VMS - 1; i++) {
                UffdPeer.proceed(children.get(i));
                assertThat(children.get(i).waitFor(30, TimeUnit.SECONDS)).isTrue();
                assertThat(children.get(i).exitValue())
                        .as(Files.readString(dir.resolve("peer-" + i + ".err")))
                        .isZero();
            }
        } finally {
            for (Session session : sessions) session.close();
            for (Accepted a : accepted) a.close();
            for (Process p : children) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertThat(fds.opened())
                .as("every received descriptor closed with its session")
                .isEmpty();
        assertThat(Thread.getAllStackTraces().keySet())
                .noneMatch(t -> t.isAlive() && t.getName().startsWith("gmem-uffd"));
    }

    /** A VMM that exits while its memory is being served ends its session as VMM_EXITED, never as a failure to punish. */
    @Test
    void aVmmThatExitsWhileServedEndsItsSessionCleanly() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", 32L << 20, 43), dir.resolve("s.snap"), Codec.ZSTD);
        Path socket = dir.resolve("exit.sock");
        Leaks.Fds fds = Leaks.fds();
        try (Snapshot s = Snapshot.open(snap);
                Fd listener = UnixSockets.listen(socket, 1)) {
            Process vm = UffdPeer.startPaused(socket, Long.toString(32L << 20), 1, dir.resolve("vm.err"));
            try {
                try (Accepted a = Accepted.of(0, listener, new SourcePages(s), s.size(), Session.Prefetch.ALL);
                        Session session = a.session()) {
                    vm.destroyForcibly(); // at once: its faults and the prefetch meet an address space that is
                    // going away
                    assertThat(vm.waitFor(10, TimeUnit.SECONDS)).isTrue();
                    Session.Report r = session.await(Duration.ofSeconds(30));
                    assertThat(r.end()).as(String.valueOf(r)).isEqualTo(Session.End.VMM_EXITED);
                }
            } finally {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertThat(fds.opened()).isEmpty();
    }

    /**
     * Served on demand ({@link Session.Prefetch#OFF}), a VM is never graduated on its own: its
     * session lives until its VMM exits, and ends then; asked to graduate, it is filled and graduated.
     */
    @Test
    void aVmServedOnDemandLivesUntilItsVmmExitsOrIsFilledToGraduate() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 53);
        byte[] image = Files.readAllBytes(raw);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.ZSTD);
        Path socket = dir.resolve("off.sock");
        Leaks.Fds fds = Leaks.fds();
        try (Snapshot s = Snapshot.open(snap);
                Fd listener = UnixSockets.listen(socket, 2)) {
            for (boolean graduate : new boolean[] {false, true}) {
                // the first VM reads all of its memory; the second none, so that only the prefetch fills it
                Process vm = UffdPeer.startPaused(
                        socket, Long.toString(SIZE), graduate ? 0 : 2, dir.resolve("vm-" + graduate + ".err"));
                try {
                    try (Accepted a = Accepted.of(0, listener, new SourcePages(s), s.size(), Session.Prefetch.OFF);
                            Session session = a.session()) {
                        if (!graduate) {
                            assertThat(Arrays.mismatch(vm.getInputStream().readNBytes((int) SIZE), image))
                                    .isEqualTo(-1);
                            Session.Report early = session.await(Duration.ofMillis(300));
                            assertThat(early.end())
                                    .as("every page read, yet no prefetch: it is not graduated")
                                    .isEqualTo(Session.End.TIMED_OUT);
                            UffdPeer.proceed(vm);
                            assertThat(vm.waitFor(10, TimeUnit.SECONDS)).isTrue();
                            Session.Report r = session.await(Duration.ofSeconds(30));
                            assertThat(r.end()).as(String.valueOf(r)).isEqualTo(Session.End.VMM_EXITED);
                            assertThat(r.counts().prefetchPages()).isZero();
                        } else {
                            session.graduateSoon();
                            Session.Report r = session.await(Duration.ofSeconds(30));
                            assertThat(r.end()).as(String.valueOf(r)).isEqualTo(Session.End.GRADUATED);
                            // (its first pages are faulted in as it starts writing its memory to the pipe)
                            assertThat(r.counts().prefetchPages()).isPositive();
                            assertThat(r.counts().prefetchPages() + r.counts().faultPages())
                                    .isEqualTo(s.counts().dataPages());
                            // graduated: its memory is read without the handler
                            assertThat(Arrays.mismatch(vm.getInputStream().readNBytes((int) SIZE), image))
                                    .isEqualTo(-1);
                            UffdPeer.proceed(vm);
                            assertThat(vm.waitFor(10, TimeUnit.SECONDS)).isTrue();
                            assertThat(vm.exitValue()).isZero();
                        }
                    }
                } finally {
                    vm.destroyForcibly();
                    vm.waitFor(10, TimeUnit.SECONDS);
                }
            }
        }
        assertThat(fds.opened()).isEmpty();
    }
}
