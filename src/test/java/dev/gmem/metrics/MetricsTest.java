package dev.gmem.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.testing.Host;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The metrics endpoint of a running lazy restore, scraped over real HTTP and parsed. */
public class MetricsTest {
    static final long SIZE = 8L << 20;
    static final long P = 4096;

    @TempDir
    Path dir;

    @Test
    void aRunningLazyRestoreIsScrapedOverHttp() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 7), dir.resolve("s.snap"), Codec.NONE);
        Metrics metrics = new Metrics();
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(UffdMode.MISSING).withPrefetch(false));
                MetricsServer server = MetricsServer.start(metrics, "127.0.0.1:0", false)) {
            metrics.watch("vm-1", lazy.engine().stats(), d.memory()::populatedPages);
            // the restore runs: no prefetch, so only these reads fault pages in
            // through native code, never a Java read: a thread blocked on a fault inside Java code would hold up every
            // safepoint
            long sum = 0;
            try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                java.lang.foreign.MemorySegment zeros = arena.allocate(P);
                for (long at = 0; at < SIZE; at += 64 * P) {
                    if (dev.gmem.linux.Posix.mismatch(lazy.memory().asSlice(at, P), zeros, P) >= 0) sum++;
                }
            }
            assertThat(server.url().toString()).startsWith("http://127.0.0.1:").endsWith("/metrics");

            Map<String, Double> m = scrape(server.url());
            var c = lazy.engine().stats().counts();
            assertThat(c.faults()).as("reads of %d", sum).isPositive();
            assertThat(m.get("gmem_sessions")).isEqualTo(1.0);
            assertThat(m.get("gmem_pages_total{path=fault,session=vm-1}")).isEqualTo((double) c.faultPages());
            assertThat(m.get("gmem_pages_total{path=zero,session=vm-1}")).isEqualTo((double) c.zeroPages());
            assertThat(m.get("gmem_pages_total{path=prefetch,session=vm-1}")).isZero();
            assertThat(m.get("gmem_faults_total{session=vm-1}")).isEqualTo((double) c.faults());
            assertThat(m.get("gmem_races_lost_total{session=vm-1}")).isEqualTo((double) c.racesLost());
            assertThat(m.get("gmem_fault_latency_seconds_count{session=vm-1}")).isEqualTo((double) c.faults());
            assertThat(m.get("gmem_fault_latency_seconds_bucket{session=vm-1,le=+Inf}"))
                    .isEqualTo((double) c.faults());
            assertThat(m.get("gmem_fault_latency_seconds_sum{session=vm-1}")).isPositive();
            assertThat(m.get("gmem_resident_pages{session=vm-1}"))
                    .isEqualTo((double) d.memory().populatedPages())
                    .isPositive();
            // cumulative buckets never decrease
            double previous = 0;
            for (var e : new TreeMap<>(buckets(m)).entrySet()) {
                assertThat(e.getValue()).as(e.getKey().toString()).isGreaterThanOrEqualTo(previous);
                previous = e.getValue();
            }

            metrics.finish("vm-1");
            Map<String, Double> ended = scrape(server.url());
            assertThat(ended.get("gmem_sessions"))
                    .as("an ended session does not count")
                    .isZero();
            assertThat(ended.get("gmem_pages_total{path=fault,session=vm-1}"))
                    .as("but keeps its final values")
                    .isEqualTo((double) c.faultPages());
            metrics.unwatch("vm-1");
            Map<String, Double> after = scrape(server.url());
            assertThat(after.get("gmem_sessions")).isZero();
            assertThat(after.keySet()).noneMatch(k -> k.contains("vm-1"));
        }
    }

    @Test
    void onlyLoopbackUnlessAskedAndABusyPortIsOneClearError() throws Exception {
        Metrics metrics = new Metrics();
        assertThatThrownBy(() -> MetricsServer.start(metrics, "0.0.0.0:0", false))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("not a loopback address")
                .hasMessageContaining("--metrics-any-address");
        assertThatThrownBy(() -> MetricsServer.start(metrics, "localhost", false))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("HOST:PORT");
        assertThatThrownBy(() -> MetricsServer.start(metrics, "127.0.0.1:99999", false))
                .hasMessageContaining("between 0 and 65535");
        try (MetricsServer first = MetricsServer.start(metrics, "127.0.0.1:0", false)) {
            assertThatThrownBy(() -> MetricsServer.start(metrics, "127.0.0.1:" + first.port(), false))
                    .isInstanceOf(java.io.IOException.class)
                    .hasMessageContaining("cannot serve metrics at 127.0.0.1:" + first.port());
        }
        try (MetricsServer v6 = MetricsServer.start(metrics, "[::1]:0", false)) {
            assertThat(v6.url().toString()).startsWith("http://[0:0:0:0:0:0:0:1]:");
        } catch (java.io.IOException noIpv6) {
            // a host without IPv6 loopback: the IPv4 cases above stand
        }
    }

    private static final Pattern LINE = Pattern.compile("^([a-z_]+)(?:\\{([^}]*)\\})? (\\S+)$");

    /** The text format as {@code name{label=value,...}} (labels in their order) to value; comments skipped. */
    public static Map<String, Double> scrape(URI url) throws Exception {
        HttpClient client =
                HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
        HttpResponse<String> r = client.send(
                HttpRequest.newBuilder(url).timeout(Duration.ofSeconds(10)).build(),
                HttpResponse.BodyHandlers.ofString());
        assertThat(r.statusCode()).isEqualTo(200);
        assertThat(r.headers().firstValue("content-type").orElse("")).startsWith("text/plain");
        Map<String, Double> out = new HashMap<>();
        for (String line : r.body().split("\n")) {
            if (line.isBlank() || line.startsWith("#")) continue;
            Matcher m = LINE.matcher(line);
            assertThat(m.matches()).as("a sample line: %s", line).isTrue();
            String labels = m.group(2) == null ? "" : "{" + m.group(2).replace("\"", "") + "}";
            out.put(m.group(1) + labels, Double.parseDouble(m.group(3)));
        }
        return out;
    }

    private static Map<Double, Double> buckets(Map<String, Double> m) {
        Map<Double, Double> out = new HashMap<>();
        m.forEach((k, v) -> {
            if (k.startsWith("gmem_fault_latency_seconds_bucket{")) {
                String le = k.substring(k.indexOf("le=") + 3, k.length() - 1);
                out.put(le.equals("+Inf") ? Double.POSITIVE_INFINITY : Double.parseDouble(le), v);
            }
        });
        return out;
    }
}
