package dev.gmem.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.bench.FaultProxy;
import dev.gmem.bench.S3Server;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The store behind a proxy that resets and stalls connections: a push and a restore through
 * resets succeed (the client retries), a push that meets a server gone silent fails in time and
 * leaves no manifest, and a manifest that names an object the store lost fails naming it.
 */
@Timeout(300)
class StoreFaultTest {
    @TempDir
    Path dir;

    @Test
    void resetsAreRetriedAStallFailsInTimeAndALostObjectIsNamed() throws Exception {
        Assumptions.assumeTrue(S3Server.jar() != null, "no S3Proxy jar at target/s3proxy/s3proxy.jar");
        Path raw = dir.resolve("vm.raw");
        ImageSynth.generate(raw, 32L << 20, new ImageSynth.Mix(0.3, 0.1, 0.05), 9, 2, b -> {});
        try (S3Server server = S3Server.start(dir);
                FaultProxy proxy = new FaultProxy(
                        new InetSocketAddress("127.0.0.1", 0),
                        new InetSocketAddress("127.0.0.1", server.endpoint().getPort()),
                        0,
                        0)) {
            try (StoreClient c = new StoreClient(server.options())) {
                c.createBucket("faults");
            }
            StoreClient.Options base = server.options();
            StoreClient.Options viaProxy = new StoreClient.Options(
                    URI.create("http://127.0.0.1:" + proxy.address().getPort()),
                    true,
                    base.region(),
                    base.credentials(),
                    base.httpClient(),
                    Duration.ofSeconds(2),
                    Duration.ofSeconds(8));
            S3Location root = S3Location.parse("s3://faults/x/");
            // resets while pushing and restoring: retried, and the restore is right. Fewer resets than a
            // request has attempts: on a slow hour one request's every attempt can meet a reset
            AtomicBoolean done = new AtomicBoolean();
            Thread chaos = proxy.chaos(new Random(3), done, StoreClient.ATTEMPTS - 1, -1, 0, 100, 300);
            try (Store s = new Store(new StoreClient(viaProxy), root, null)) {
                try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
                    StorePush.push(s, image, root.snapshot("vm"), null, Codec.LZ4, new LinkedHashMap<>(), 8, b -> {});
                }
                try (StoreSource src = StoreSource.open(s, root.snapshot("vm"));
                        Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, src);
                        RawImage image = RawImage.open(raw, null, 2, b -> {})) {
                    EagerRestore.restore(src, d.memory(), EagerRestore.Options.automatic(false), b -> {});
                    EagerRestore.verifyContents(image, d.memory(), 2);
                }
            } finally {
                done.set(true);
                chaos.join();
            }
            assertThat(proxy.resets()).isPositive();

            // a server gone silent: the push fails within its time-outs, and no manifest names anything
            try (Store s = new Store(new StoreClient(viaProxy), root, null)) {
                proxy.stall(true);
                long t0 = System.nanoTime();
                try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
                    assertThatThrownBy(() -> StorePush.push(
                                    s,
                                    image,
                                    root.snapshot("stalled"),
                                    null,
                                    Codec.NONE,
                                    new LinkedHashMap<>(),
                                    4,
                                    b -> {}))
                            .isInstanceOf(StoreException.class)
                            .hasMessageContaining("s3://faults/x/");
                }
                assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(60));
                proxy.stall(false);
                proxy.resetAll();
            }
            try (StoreClient c = new StoreClient(base)) {
                assertThat(c.lastModified("faults", root.snapshot("stalled").manifestKey()))
                        .as("no manifest after a push that failed")
                        .isNull();
            }

            // an object the store lost: named, and nothing restored
            try (Store s = new Store(new StoreClient(base), root, null)) {
                StoreManifest m = s.manifest(root.snapshot("vm"));
                String hex = m.chunks().stream()
                        .filter(c -> !c.layers().isEmpty())
                        .findFirst()
                        .orElseThrow()
                        .layers()
                        .getFirst()
                        .object()
                        .hex();
                s.client().delete("faults", List.of(root.objectKey(hex)));
                try (StoreSource src = StoreSource.open(s, root.snapshot("vm"));
                        Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, src)) {
                    assertThatThrownBy(() -> EagerRestore.restore(
                                    src, d.memory(), EagerRestore.Options.automatic(false), b -> {}))
                            .hasMessageContaining(hex)
                            .hasMessageContaining("no such object");
                }
            }
        }
    }
}
