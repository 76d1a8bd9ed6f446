package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import dev.gmem.testing.UffdPeer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A Firecracker-protocol session served from a remote source: {@code gmem serve} holds the memory
 * file, {@code gmem fc-handler --source tcp://} serves two test VMMs (each touching every page in a
 * random order from two threads while discarding pages), each VM a post-copy destination of its
 * own. Every page right, zeros where discarded; both VMs graduate.
 */
class FcHandlerRemoteTest {
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    @Test
    void twoVmsRestoreFromARemoteSource() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 67);
        GmemProcess.Started server = serve(raw);
        GmemProcess.Started handler = null;
        List<Process> vms = new ArrayList<>();
        try {
            String ready = awaitLine(server, "\"ready\"");
            String port = ready.replaceAll(".*\"listen\":\"[^\"]*:(\\d+)\".*", "$1");
            Path socket = dir.resolve("fc.sock");
            handler = GmemProcess.start(
                    dir,
                    List.of(),
                    GmemProcess.classPath(),
                    "fc-handler",
                    "--socket",
                    socket.toString(),
                    "--source",
                    "tcp://127.0.0.1:" + port,
                    "--json");
            awaitLine(handler, "\"ready\"");
            for (int i = 0; i < 2; i++) {
                ProcessBuilder pb = new ProcessBuilder(
                                UffdPeer.binary().toString(), socket.toString(), Long.toString(SIZE), "2")
                        .redirectError(dir.resolve("vm-" + i + ".err").toFile());
                pb.environment().put("UFFD_PEER_RANDOM", Long.toString(i + 3));
                pb.environment().put("UFFD_PEER_DISCARDS", "100");
                pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
                // each VM stays until it is let go, so that its memory can graduate: a VM that has touched every page
                // and exits first ends its session before the push completes (on a loaded host, it did)
                pb.environment().put("UFFD_PEER_PAUSE", "1");
                vms.add(pb.start());
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (Files.readString(handler.out()).split("\"end\":\"graduated\"", -1).length < 3
                    && vms.stream().allMatch(Process::isAlive)
                    && System.nanoTime() < deadline) Thread.sleep(20);
            assertThat(Files.readString(handler.out()).split("\"end\":\"graduated\"", -1).length - 1)
                    .as(
                            "both graduate while their VMs run: %s %s; the source said %s",
                            Files.readString(handler.out()),
                            Files.readString(handler.err()),
                            Files.readString(server.err()))
                    .isEqualTo(2);
            for (Process vm : vms) UffdPeer.proceed(vm);
            for (int i = 0; i < 2; i++) {
                Process vm = vms.get(i);
                assertThat(vm.waitFor(60, TimeUnit.SECONDS))
                        .as("VM %d finishes; the handler said %s", i, Files.readString(handler.err()))
                        .isTrue();
                String out = new String(vm.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
                assertThat(vm.exitValue())
                        .as(Files.readString(dir.resolve("vm-" + i + ".err")))
                        .isZero();
                assertThat(out)
                        .as("VM %d: %s", i, Files.readString(dir.resolve("vm-" + i + ".err")))
                        .contains(" wrong=0 ");
            }
            assertThat(Files.readString(server.err())).contains("every data page pushed");
        } finally {
            for (Process vm : vms) {
                vm.destroyForcibly();
                vm.waitFor(10, TimeUnit.SECONDS);
            }
            for (GmemProcess.Started d : new GmemProcess.Started[] {handler, server}) {
                if (d == null) continue;
                new ProcessBuilder("kill", "-TERM", Long.toString(d.process().pid()))
                        .start()
                        .waitFor(10, TimeUnit.SECONDS);
                assertThat(d.await(Duration.ofSeconds(30)).timedOut()).isFalse();
            }
        }
    }

    /** {@code gmem restore tcp:// --export}: the eager way, every chunk asked for; the file is the source's byte for byte. */
    @Test
    void anEagerRestoreFromARemoteSourceExportsTheSameBytes() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 71);
        GmemProcess.Started server = serve(raw);
        try {
            String port = awaitLine(server, "\"ready\"").replaceAll(".*\"listen\":\"[^\"]*:(\\d+)\".*", "$1");
            Path out = dir.resolve("exported.mem");
            GmemProcess.Result r = GmemProcess.run(
                    Duration.ofSeconds(120),
                    dir,
                    "restore",
                    "tcp://127.0.0.1:" + port,
                    "--export",
                    out.toString(),
                    "--verify");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("verified: every page matches the source");
            assertThat(Files.mismatch(out, raw)).isEqualTo(-1);
        } finally {
            new ProcessBuilder("kill", "-TERM", Long.toString(server.process().pid()))
                    .start()
                    .waitFor(10, TimeUnit.SECONDS);
            assertThat(server.await(Duration.ofSeconds(30)).timedOut()).isFalse();
        }
    }

    /** {@code gmem serve} of {@code raw} on a free loopback port, as a process. */
    private GmemProcess.Started serve(Path raw) throws Exception {
        return GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--memory",
                raw.toString(),
                "--json");
    }

    private static String awaitLine(GmemProcess.Started d, String marker) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            for (String l : Files.readAllLines(d.out())) if (l.contains(marker)) return l;
            assertThat(d.process().isAlive())
                    .as("it runs: %s", Files.readString(d.err()))
                    .isTrue();
            Thread.sleep(10);
        }
        throw new AssertionError("no " + marker + " line: " + Files.readString(d.err()));
    }
}
