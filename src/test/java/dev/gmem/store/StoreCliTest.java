package dev.gmem.store;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.bench.S3Server;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The store commands as processes against a real S3 server: push, ls, restore, pull, rm, gc, and their errors. */
@Timeout(300)
class StoreCliTest {
    static final Duration RUN = Duration.ofSeconds(120);

    @TempDir
    Path dir;

    @Test
    void theCommandsEndToEnd() throws Exception {
        Assumptions.assumeTrue(S3Server.jar() != null, "no S3Proxy jar at target/s3proxy/s3proxy.jar");
        try (S3Server server = S3Server.start(dir);
                StoreClient store = new StoreClient(server.options())) {
            store.createBucket("cli");
            Map<String, String> env = env(server);
            Path raw = dir.resolve("vm.raw");
            ImageSynth.generate(raw, 32L << 20, new ImageSynth.Mix(0.3, 0.1, 0.05), 3, 2, b -> {});
            GmemProcess.Result r =
                    GmemProcess.run(RUN, dir, env, "snapshot", "push", raw.toString(), "s3://cli/fleet/vm1", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"objects_uploaded\"");
            r = GmemProcess.run(RUN, dir, env, "snapshot", "ls", "s3://cli/fleet/");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).startsWith("vm1 ");
            r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/vm1", "--verify", "--check-guest");
            assertThat(r.exit()).as(r.toString()).isZero();
            if (Host.hasUserfaultfd()) {
                r = GmemProcess.run(
                        RUN, dir, env, "restore", "s3://cli/fleet/vm1", "--mode", "lazy", "--verify", "--check-guest");
                assertThat(r.exit()).as(r.toString()).isZero();
            }
            Path pulled = dir.resolve("pulled.snap");
            r = GmemProcess.run(RUN, dir, env, "snapshot", "pull", "s3://cli/fleet/vm1", "-o", pulled.toString());
            assertThat(r.exit()).as(r.toString()).isZero();
            Path back = dir.resolve("back.raw");
            r = GmemProcess.run(RUN, dir, env, "snapshot", "unpack", pulled.toString(), "-o", back.toString());
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(Files.mismatch(raw, back))
                    .as("pulled, byte for byte the pushed file")
                    .isEqualTo(-1);

            r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/nothing");
            assertThat(r.exit()).as(r.toString()).isEqualTo(1);
            assertThat(r.errLines())
                    .singleElement()
                    .asString()
                    .contains("s3://cli/fleet/snapshots/nothing: no such object");
            r = GmemProcess.run(RUN, dir, env, "snapshot", "push", raw.toString(), "s3://Bad_Bucket/x");
            assertThat(r.exit()).as(r.toString()).isEqualTo(2);

            firecrackerAndServeFromTheStore(env, raw);

            r = GmemProcess.run(RUN, dir, env, "snapshot", "rm", "s3://cli/fleet/vm1");
            assertThat(r.exit()).as(r.toString()).isZero();
            r = GmemProcess.run(RUN, dir, env, "store", "gc", "s3://cli/fleet/", "--grace", "0", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"snapshots\" : 0").doesNotContain("\"removed\" : 0,");
        }
    }

    /**
     * A push killed (SIGKILL) after some of its objects went up leaves no snapshot: no manifest, so
     * nothing names a missing object. Its orphans are what gc finds, and the same push again
     * completes, uploading only what the killed one had not, and restores page for page.
     */
    @Test
    void aPushKilledHalfwayLeavesNoSnapshot() throws Exception {
        Assumptions.assumeTrue(S3Server.jar() != null, "no S3Proxy jar at target/s3proxy/s3proxy.jar");
        try (S3Server server = S3Server.start(dir);
                StoreClient store = new StoreClient(server.options())) {
            store.createBucket("cli");
            Map<String, String> env = env(server);
            Path raw = dir.resolve("big.raw");
            // 256 MiB, mostly incompressible data: a push of some seconds here
            ImageSynth.generate(raw, 256L << 20, new ImageSynth.Mix(0.02, 0.02, 0.01), 9, 2, b -> {});
            GmemProcess.Started push =
                    GmemProcess.start(dir, env, "snapshot", "push", raw.toString(), "s3://cli/fleet/vm-killed");
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            long seen = 0;
            while (push.process().isAlive() && System.nanoTime() < deadline) {
                seen = store.list("cli", "fleet/chunks/").size();
                if (seen >= 16) break;
                Thread.sleep(5);
            }
            push.process().destroyForcibly();
            GmemProcess.Result killed = push.await(Duration.ofSeconds(30));
            assertThat(killed.timedOut()).isFalse();
            Assumptions.assumeTrue(
                    killed.exit() != 0, "the push finished before it was killed: this host is too fast for the test");
            assertThat(seen).as(killed.toString()).isGreaterThanOrEqualTo(16);
            // the server may still complete PUTs whose bodies had arrived: count once the listing holds still
            long left = store.list("cli", "fleet/chunks/").size();
            for (long before = -1; left != before && System.nanoTime() < deadline; ) {
                Thread.sleep(500);
                before = left;
                left = store.list("cli", "fleet/chunks/").size();
            }

            GmemProcess.Result r = GmemProcess.run(RUN, dir, env, "snapshot", "ls", "s3://cli/fleet/");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).as("no snapshot of the killed push").doesNotContain("vm-killed");
            r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/vm-killed");
            assertThat(r.exit()).as(r.toString()).isEqualTo(1);
            assertThat(r.err()).contains("snapshots/vm-killed: no such object");
            r = GmemProcess.run(RUN, dir, env, "store", "gc", "s3://cli/fleet/", "--grace", "0", "--dry-run", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).as("the orphans are what gc would remove").contains("\"removed\" : " + left + ",");

            r = GmemProcess.run(
                    RUN, dir, env, "snapshot", "push", raw.toString(), "s3://cli/fleet/vm-killed", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            long objects = Long.parseLong(r.out().replaceAll("(?s).*\"objects\" : (\\d+).*", "$1"));
            long uploaded = Long.parseLong(r.out().replaceAll("(?s).*\"objects_uploaded\" : (\\d+).*", "$1"));
            assertThat(uploaded)
                    .as("the objects the killed push left were not uploaded again")
                    .isEqualTo(objects - left);
            r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/vm-killed", "--verify", "--check-guest");
            assertThat(r.exit()).as(r.toString()).isZero();
        }
    }

    /** A Firecracker-protocol session served from s3://, and a page server serving s3:// to an eager restore. */
    private void firecrackerAndServeFromTheStore(Map<String, String> env, Path raw) throws Exception {
        if (Host.hasUserfaultfd()) {
            dev.gmem.testing.UffdPeer.binary();
            Path socket = dir.resolve("fc.sock");
            GmemProcess.Started handler = GmemProcess.start(
                    dir,
                    env,
                    "fc-handler",
                    "--socket",
                    socket.toString(),
                    "--snapshot",
                    "s3://cli/fleet/vm1",
                    "--json");
            Process vm = null;
            try {
                awaitLine(handler, "\"ready\"");
                ProcessBuilder pb = new ProcessBuilder(
                                dev.gmem.testing.UffdPeer.binary().toString(),
                                socket.toString(),
                                Long.toString(32L << 20),
                                "2")
                        .redirectError(dir.resolve("vm.err").toFile());
                pb.environment().put("UFFD_PEER_RANDOM", "5");
                pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
                vm = pb.start();
                assertThat(vm.waitFor(60, java.util.concurrent.TimeUnit.SECONDS))
                        .isTrue();
                String out = new String(vm.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII);
                assertThat(vm.exitValue())
                        .as(Files.readString(dir.resolve("vm.err")))
                        .isZero();
                assertThat(out).as(Files.readString(handler.err())).contains(" wrong=0 ");
            } finally {
                if (vm != null) {
                    vm.destroyForcibly();
                    vm.waitFor(10, java.util.concurrent.TimeUnit.SECONDS);
                }
                handler.process().destroy();
                assertThat(handler.await(Duration.ofSeconds(30)).timedOut()).isFalse();
            }
        }
        GmemProcess.Started server = GmemProcess.start(
                dir, env, "serve", "--listen", "127.0.0.1:0", "--snapshot", "s3://cli/fleet/vm1", "--json");
        try {
            String port = awaitLine(server, "\"ready\"").replaceAll(".*\"listen\":\"[^\"]*:(\\d+)\".*", "$1");
            Path out = dir.resolve("served.mem");
            GmemProcess.Result r = GmemProcess.run(
                    RUN, dir, "restore", "tcp://127.0.0.1:" + port, "--export", out.toString(), "--verify");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(Files.mismatch(out, raw)).isEqualTo(-1);
        } finally {
            server.process().destroy();
            assertThat(server.await(Duration.ofSeconds(30)).timedOut()).isFalse();
        }
    }

    /** A gmem process's environment for {@code server}: its credentials and endpoint, and a cache of the test's. */
    private Map<String, String> env(S3Server server) {
        return Map.of(
                "AWS_ACCESS_KEY_ID",
                S3Server.IDENTITY,
                "AWS_SECRET_ACCESS_KEY",
                S3Server.CREDENTIAL,
                "AWS_ENDPOINT_URL",
                server.endpoint().toString(),
                "XDG_CACHE_HOME",
                dir.resolve("xdg").toString());
    }

    private static String awaitLine(GmemProcess.Started d, String marker) throws Exception {
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline && d.process().isAlive()) {
            for (String l : Files.readAllLines(d.out())) if (l.contains(marker)) return l;
            Thread.sleep(20);
        }
        throw new AssertionError("no " + marker + " line: " + Files.readString(d.err()));
    }
}
