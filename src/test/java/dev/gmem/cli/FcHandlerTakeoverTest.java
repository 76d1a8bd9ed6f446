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
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code --state-dir}: the handler is SIGKILLed at a random moment while a VM restores, touching
 * every page in a random order from two threads while a balloon discards pages; a new handler on
 * the same state directory takes the VM over and the restore finishes with no wrong page, zeros
 * where pages were discarded, and no thread left blocked.
 */
class FcHandlerTakeoverTest {
    static final long SIZE = 128L << 20;
    static final int ROUNDS = Integer.getInteger("gmem.takeover.rounds", 20);

    @TempDir
    Path dir;

    @Test
    void aVmRestoresThroughAHandlerKilledAtARandomMoment() throws Exception {
        Host.assumeUserfaultfd();
        org.junit.jupiter.api.Assumptions.assumeTrue(
                dev.gmem.fc.Takeover.mayTakeDescriptors(),
                "needs ptrace rights over the VMM to take its userfaultfd again (root or CAP_SYS_PTRACE)");
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 89);
        Path state = dir.resolve("state");
        Path socket = dir.resolve("fc.sock");
        long seed = Long.getLong("gmem.takeover.seed", System.nanoTime());
        System.out.println("takeover test: seed " + seed + " (replay with -Dgmem.takeover.seed=" + seed + ")");
        Random rnd = new Random(seed);
        int takenOver = 0;
        long longestWaitNs = 0;
        for (int round = 0; round < ROUNDS; round++) {
            String prefetch = round % 2 == 0 ? "off" : "all";
            GmemProcess.Started first = daemon(raw, socket, state, prefetch);
            Process vm = null;
            GmemProcess.Started second = null;
            try {
                awaitReady(first);
                if (round == 0) {
                    GmemProcess.Result other = GmemProcess.run(
                            Duration.ofSeconds(60),
                            dir,
                            "fc-handler",
                            "--socket",
                            dir.resolve("other.sock").toString(),
                            "--snapshot",
                            raw.toString(),
                            "--state-dir",
                            state.toString());
                    assertThat(other.exit()).as(other.toString()).isEqualTo(1);
                    assertThat(other.err()).contains("another gmem fc-handler uses this state directory");
                }
                ProcessBuilder pb = new ProcessBuilder(
                                UffdPeer.binary().toString(), socket.toString(), Long.toString(SIZE), "2")
                        .redirectError(dir.resolve("vm.err").toFile());
                pb.environment().put("UFFD_PEER_RANDOM", Long.toString(round + 1));
                pb.environment().put("UFFD_PEER_DISCARDS", "300");
                pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
                vm = pb.start();
                // mid-restore: once the handler has recorded the VM (a handler that dies before that, with the
                // handshake in flight, loses it: Firecracker sends it once, on a connection that dies with it)
                long recordedBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (recorded(state) == 0 && System.nanoTime() < recordedBy) Thread.sleep(1);
                assertThat(recorded(state))
                        .as("round %d: the VM is recorded", round)
                        .isEqualTo(1);
                Thread.sleep(rnd.nextInt(400));
                first.process().destroyForcibly(); // SIGKILL: no chance to graduate or hand anything over
                assertThat(first.process().waitFor(10, TimeUnit.SECONDS)).isTrue();
                second = daemon(raw, socket, state, prefetch);
                awaitReady(second);
                boolean finished = vm.waitFor(60, TimeUnit.SECONDS);
                assertThat(finished)
                        .as(
                                "round %d: the VM finishes its restore (%s); the first handler said %s; the second %s",
                                round, prefetch, Files.readString(first.err()), Files.readString(second.err()))
                        .isTrue();
                String out = new String(vm.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
                assertThat(vm.exitValue())
                        .as(Files.readString(dir.resolve("vm.err")))
                        .isZero();
                assertThat(out).as("round %d", round).contains(" wrong=0 ");
                longestWaitNs = Math.max(longestWaitNs, Long.parseLong(out.replaceAll(".*max_ns=(\\d+).*\\s*", "$1")));
                // the VM ends with its VMM: the new handler forgets it, and nothing is left for a third
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (recorded(state) > 0 && System.nanoTime() < deadline) Thread.sleep(20);
                assertThat(recorded(state))
                        .as("round %d: its record is removed", round)
                        .isZero();
                if (Files.readString(second.err()).contains("taken over")) takenOver++;
            } finally {
                if (vm != null) {
                    vm.destroyForcibly();
                    vm.waitFor(10, TimeUnit.SECONDS);
                }
                first.process().destroyForcibly();
                first.process().waitFor(10, TimeUnit.SECONDS);
                if (second != null) {
                    new ProcessBuilder(
                                    "kill",
                                    "-TERM",
                                    Long.toString(second.process().pid()))
                            .start()
                            .waitFor(10, TimeUnit.SECONDS);
                    GmemProcess.Result r = second.await(Duration.ofSeconds(60));
                    assertThat(r.timedOut()).isFalse();
                }
            }
        }
        System.out.println("takeover test: " + takenOver + " of " + ROUNDS + " VMs taken over; longest fault wait "
                + longestWaitNs / 1_000_000 + " ms");
        assertThat(takenOver).as("some kills came before the VM was done").isPositive();
        assertThat(GmemProcess.crashLogs(dir)).isEmpty();
    }

    private GmemProcess.Started daemon(Path raw, Path socket, Path state, String prefetch) throws Exception {
        return GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                "fc-handler",
                "--socket",
                socket.toString(),
                "--snapshot",
                raw.toString(),
                "--state-dir",
                state.toString(),
                "--prefetch",
                prefetch,
                "--json");
    }

    private static long recorded(Path state) throws Exception {
        try (var s = Files.list(state)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".json")).count();
        }
    }

    private static void awaitReady(GmemProcess.Started d) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            if (Files.readString(d.out()).contains("\"event\":\"ready\"")) return;
            assertThat(d.process().isAlive())
                    .as("the daemon runs: %s", Files.readString(d.err()))
                    .isTrue();
            Thread.sleep(10);
        }
        throw new AssertionError("the daemon did not get ready: " + Files.readString(d.err()));
    }
}
