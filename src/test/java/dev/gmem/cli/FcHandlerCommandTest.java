package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import dev.gmem.testing.UffdPeer;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

/** gmem fc-handler as a real daemon process, a VM-like process served by it, and SIGTERM: exit 0, every VM graduated, the socket gone. */
class FcHandlerCommandTest {
    static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    @Test
    void theDaemonServesAVmAndStopsCleanlyOnSigterm() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 37);
        byte[] image = Files.readAllBytes(raw);
        Path snap = Fixtures.pack(raw, dir.resolve("vm.snap"), Codec.ZSTD);
        Path socket = dir.resolve("fc.sock");
        GmemProcess.Started daemon = GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                "fc-handler",
                "--socket",
                socket.toString(),
                "--snapshot",
                snap.toString(),
                "--json");
        Process vm = null;
        try {
            JsonNode ready = awaitLine(daemon, "\"event\":\"ready\"");
            assertThat(ready.get("format").asString()).isEqualTo("snapshot");
            assertThat(Files.getPosixFilePermissions(socket)).hasSize(2);
            vm = UffdPeer.startPaused(socket, (5L << 20) + "," + (3L << 20), 2, dir.resolve("vm.err"));
            InputStream in = vm.getInputStream();
            assertThat(Arrays.mismatch(in.readNBytes((int) SIZE), image))
                    .as("the VM read its snapshot's bytes")
                    .isEqualTo(-1);
            JsonNode ended = awaitLine(daemon, "\"event\":\"ended\"");
            assertThat(ended.get("end").asString()).isEqualTo("graduated");
            assertThat(ended.get("pid").asLong()).isEqualTo(vm.pid());
            UffdPeer.proceed(vm);
            assertThat(vm.waitFor(30, TimeUnit.SECONDS))
                    .as("the graduated VM runs on")
                    .isTrue();
            // --stats asks the running daemon through its control socket
            GmemProcess.Result stats = GmemProcess.run(
                    Duration.ofSeconds(60), dir, "fc-handler", "--socket", socket.toString(), "--stats", "--json");
            assertThat(stats.exit()).as(stats.toString()).isZero();
            JsonNode st = Json.mapper().readTree(stats.out());
            assertThat(st.get("sessions").asLong()).isEqualTo(1);
            assertThat(st.get("graduated").asLong()).isEqualTo(1);
            assertThat(st.get("live").size()).isZero();
            assertThat(st.get("total").get("fault_pages").asLong()
                            + st.get("total").get("prefetch_pages").asLong())
                    .as("every data page, once")
                    .isEqualTo(ended.get("fault_pages").asLong()
                            + ended.get("prefetch_pages").asLong())
                    .isPositive();
            GmemProcess.Result table = GmemProcess.run(
                    Duration.ofSeconds(60), dir, "fc-handler", "--socket", socket.toString(), "--stats");
            assertThat(table.exit()).as(table.toString()).isZero();
            assertThat(table.out())
                    .contains("1 VMs served: 0 live, 1 graduated")
                    .contains("total");

            new ProcessBuilder("kill", "-TERM", Long.toString(daemon.process().pid()))
                    .start()
                    .waitFor(10, TimeUnit.SECONDS);
            GmemProcess.Result r = daemon.await(Duration.ofSeconds(60));
            assertThat(r.timedOut()).isFalse();
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out())
                    .contains("\"event\":\"stopped\"")
                    .contains("\"signal\":\"SIGTERM\"")
                    .contains("\"unfinished\":[]");
            assertThat(r.errLines()).as(r.toString()).isEmpty();
            assertThat(socket).as("the socket is removed").doesNotExist();
            assertThat(dir.resolve("fc.sock.ctl")).as("and its control socket").doesNotExist();
            GmemProcess.Result gone = GmemProcess.run(
                    Duration.ofSeconds(60), dir, "fc-handler", "--socket", socket.toString(), "--stats");
            assertThat(gone.exit()).isEqualTo(1);
            assertThat(gone.errLines()).singleElement().asString().contains("no gmem fc-handler answers at");
            assertThat(GmemProcess.crashLogs(dir)).isEmpty();
        } finally {
            daemon.process().destroyForcibly();
            daemon.process().waitFor(10, TimeUnit.SECONDS);
            if (vm != null) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
        }
    }

    /** The first line of the daemon's stdout that contains {@code marker}, as JSON; fails after 30 s. */
    private static JsonNode awaitLine(GmemProcess.Started daemon, String marker) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            for (String line : Files.readAllLines(daemon.out(), StandardCharsets.UTF_8)) {
                if (line.contains(marker)) return Json.mapper().readTree(line);
            }
            assertThat(daemon.process().isAlive())
                    .as("the daemon runs: %s", Files.readString(daemon.err()))
                    .isTrue();
            Thread.sleep(20);
        }
        throw new AssertionError("no line with " + marker + " in 30 s: " + Files.readString(daemon.out()));
    }
}
