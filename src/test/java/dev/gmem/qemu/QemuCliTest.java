package dev.gmem.qemu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.bench.LinuxGuest;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** gmem qemu snapshot and restore as commands: exit statuses, one-line errors, JSON, and a restore it supervises. */
@Timeout(120)
class QemuCliTest {
    static final Duration RUN = Duration.ofSeconds(60);

    @TempDir
    Path dir;

    private static String[] with(String[] head, List<String> tail) {
        List<String> all = new ArrayList<>(List.of(head));
        all.addAll(tail);
        return all.toArray(String[]::new);
    }

    @Test
    void errorsAreOneLineWithTheirExitStatus() throws Exception {
        GmemProcess.Result r = GmemProcess.run(
                RUN, dir, "qemu", "snapshot", "--qmp", dir.resolve("none.sock").toString(), "-o", "x.snap");
        assertThat(r.exit()).as(r.toString()).isEqualTo(1);
        assertThat(r.errLines()).singleElement().asString().startsWith("gmem qemu snapshot: no QMP at ");

        Path plain = Fixtures.pack(Fixtures.raw(dir, "raw", 1 << 20, 2), dir.resolve("plain.snap"), Codec.NONE);
        r = GmemProcess.run(RUN, dir, "qemu", "restore", plain.toString(), "--", LinuxGuest.QEMU);
        assertThat(r.exit()).as(r.toString()).isEqualTo(4);
        assertThat(r.errLines()).singleElement().asString().contains("is not a snapshot of QEMU");

        r = GmemProcess.run(RUN, dir, "qemu", "restore", plain.toString());
        assertThat(r.exit()).as(r.toString()).isEqualTo(2);
        assertThat(r.err()).contains("give the QEMU command after '--'");

        r = GmemProcess.run(RUN, dir, "qemu", "snapshot", "--qmp", "q.sock", "-o", "x", "--resume", "--quit");
        assertThat(r.exit()).as(r.toString()).isEqualTo(2);
    }

    @Test
    void aSnapshotAndASupervisedRestoreByTheCommands() throws Exception {
        QemuVm.assumeQemu();
        Path snap = dir.resolve("vm.snap");
        try (QemuVm unshared = QemuVm.start(QemuVm.bare(List.of("-m", "32M")), dir)) {
            GmemProcess.Result r = GmemProcess.run(
                    RUN, dir, "qemu", "snapshot", "--qmp", unshared.qmp.toString(), "-o", snap.toString());
            assertThat(r.exit()).as(r.toString()).isEqualTo(3);
            assertThat(r.errLines())
                    .singleElement()
                    .asString()
                    .contains("share=off")
                    .contains("memory-backend-memfd");
        }
        try (QemuVm vm = QemuVm.start(QemuVm.bare(QemuVm.memfdRam("mem", 32)), dir)) {
            GmemProcess.Result r = GmemProcess.run(
                    RUN,
                    dir,
                    "qemu",
                    "snapshot",
                    "--qmp",
                    vm.qmp.toString(),
                    "-o",
                    snap.toString(),
                    "--quit",
                    "--json",
                    "--compress",
                    "lz4");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"ram_id\" : \"mem\"").contains("\"after\" : \"quit\"");
            assertThat(vm.awaitExit(Duration.ofSeconds(20))).isZero();
        }
        // packed again with another codec, it keeps what it carries besides RAM
        Path repacked = dir.resolve("re.snap");
        GmemProcess.Result pack = GmemProcess.run(
                RUN, dir, "snapshot", "pack", snap.toString(), "-o", repacked.toString(), "--compress", "zstd");
        assertThat(pack.exit()).as(pack.toString()).isZero();
        GmemProcess.Result inspect = GmemProcess.run(RUN, dir, "snapshot", "inspect", repacked.toString());
        assertThat(inspect.out())
                .contains("format version 2")
                .containsPattern("attachments: qemu \\(.*\\), qemu.device-state \\(");
        try (var a = dev.gmem.snapshot.Snapshot.open(snap);
                var b = dev.gmem.snapshot.Snapshot.open(repacked)) {
            assertThat(b.attachments().keySet())
                    .containsExactlyElementsOf(a.attachments().keySet());
            for (var e : a.attachments().entrySet())
                assertThat(b.attachment(e.getKey())).isEqualTo(e.getValue());
        }
        snap = repacked;
        List<String> qemu =
                List.of(LinuxGuest.QEMU, "-accel", "tcg", "-nodefaults", "-display", "none", "-machine", "q35");

        GmemProcess.Result refused = GmemProcess.run(
                RUN,
                dir,
                with(
                        new String[] {"qemu", "restore", snap.toString(), "--"},
                        List.of(LinuxGuest.QEMU, "-machine", "pc")));
        assertThat(refused.exit()).as(refused.toString()).isEqualTo(2);
        assertThat(refused.errLines()).singleElement().asString().contains("the snapshot is of machine pc-q35-");

        Path socket = dir.resolve("restored.sock");
        GmemProcess.Started restore = GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                with(new String[] {"qemu", "restore", snap.toString(), "--qmp", socket.toString(), "--"}, qemu));
        long deadline = System.nanoTime() + RUN.toNanos();
        while (!restore.errContains("QMP " + socket) && restore.process().isAlive() && System.nanoTime() < deadline)
            Thread.sleep(20);
        try (Qmp q = Qmp.connect(socket, Duration.ofSeconds(10))) {
            assertThat(q.execute("query-status", Map.of()).path("status").asString(""))
                    .isEqualTo("running");
            q.execute("quit", Map.of());
        } catch (QmpException e) {
            // QEMU may close the connection before its reply to quit
            assertThat(e.errorClass()).isNull();
        }
        GmemProcess.Result done = restore.await(RUN);
        assertThat(done.exit()).as(done.toString()).isZero();
        assertThat(done.err()).contains("gmem: QEMU ").contains(" runs from " + snap);
        assertThat(Files.exists(socket)).isFalse();

        // SIGTERM to gmem stops its QEMU too, and reaps it
        restore = GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                with(new String[] {"qemu", "restore", snap.toString(), "--qmp", socket.toString(), "--"}, qemu));
        deadline = System.nanoTime() + RUN.toNanos();
        while (!restore.errContains("QMP " + socket) && restore.process().isAlive() && System.nanoTime() < deadline)
            Thread.sleep(20);
        List<ProcessHandle> qemus = restore.process().children().toList();
        assertThat(qemus).hasSize(1);
        restore.process().destroy();
        done = restore.await(RUN);
        assertThat(done.timedOut()).isFalse();
        assertThat(qemus.getFirst().isAlive()).as("QEMU stopped with gmem").isFalse();
        assertThat(Files.exists(socket)).isFalse();
    }
}
