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
        try (S3Server server = S3Server.start(dir)) {
            try (StoreClient c = new StoreClient(server.options())) {
                c.createBucket("cli");
            }
            Map<String, String> env = Map.of(
                    "AWS_ACCESS_KEY_ID",
                    S3Server.IDENTITY,
                    "AWS_SECRET_ACCESS_KEY",
                    S3Server.CREDENTIAL,
                    "AWS_ENDPOINT_URL",
                    server.endpoint().toString(),
                    "XDG_CACHE_HOME",
                    dir.resolve("xdg").toString());
            Path raw = dir.resolve("vm.raw");
            ImageSynth.generate(raw, 32L << 20, new ImageSynth.Mix(0.3, 0.1, 0.05), 3, 2, b -> {});
            GmemProcess.Result r =
                    GmemProcess.run(RUN, dir, env, "snapshot", "push", raw.toString(), "s3://cli/fleet/vm1", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"objects_uploaded\"");
            r = GmemProcess.run(RUN, dir, env, "snapshot", "ls", "s3://cli/fleet/");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).startsWith("vm1 ");
            r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/vm1", "--verify");
            assertThat(r.exit()).as(r.toString()).isZero();
            if (Host.hasUserfaultfd()) {
                r = GmemProcess.run(RUN, dir, env, "restore", "s3://cli/fleet/vm1", "--mode", "lazy", "--verify");
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

            r = GmemProcess.run(RUN, dir, env, "snapshot", "rm", "s3://cli/fleet/vm1");
            assertThat(r.exit()).as(r.toString()).isZero();
            r = GmemProcess.run(RUN, dir, env, "store", "gc", "s3://cli/fleet/", "--grace", "0", "--json");
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"snapshots\" : 0").doesNotContain("\"removed\" : 0,");
        }
    }
}
