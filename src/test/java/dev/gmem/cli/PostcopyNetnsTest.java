package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.bench.FaultProxy;
import dev.gmem.bench.TestCerts;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Post-copy between network namespaces, with the real commands: {@code gmem serve} in a namespace
 * this test creates (a veth pair to the root namespace, TLS 1.3 with client certificates), and
 * {@code gmem restore tcp://} in the root namespace through a proxy there that adds 1 ms each way,
 * caps the bandwidth, resets every connection ten times and stalls them once. 256 MiB migrate
 * with {@code --verify}, then with {@code --check-guest}: no wrong page. A client whose certificate
 * another CA signed is refused with a clear error, and the server serves the next one.
 */
class PostcopyNetnsTest {
    static final long SIZE = 256L << 20;

    @TempDir
    Path dir;

    @Test
    void migratesBetweenNamespacesThroughResetsAStallAndDelay() throws Exception {
        Host.assumeUserfaultfd();
        org.junit.jupiter.api.Assumptions.assumeTrue(Host.isRoot(), "needs root to create a network namespace");
        org.junit.jupiter.api.Assumptions.assumeTrue(
                run(10, "ip", "netns", "list") == 0, "needs the ip command (iproute2) with netns support");
        Random rnd = new Random();
        int n = 1 + rnd.nextInt(250);
        String ns = "gmem-pc-" + ProcessHandle.current().pid() + "-" + n;
        String outer = "gpc" + n + "a", inner = "gpc" + n + "b";
        String here = "10.213." + n + ".1", there = "10.213." + n + ".2";
        List<Process> started = new ArrayList<>();
        try {
            assertThat(run(10, "ip", "netns", "add", ns)).isZero();
            assertThat(run(10, "ip", "link", "add", outer, "type", "veth", "peer", "name", inner))
                    .isZero();
            assertThat(run(10, "ip", "link", "set", inner, "netns", ns)).isZero();
            assertThat(run(10, "ip", "addr", "add", here + "/30", "dev", outer)).isZero();
            assertThat(run(10, "ip", "link", "set", outer, "up")).isZero();
            assertThat(run(10, "ip", "netns", "exec", ns, "ip", "addr", "add", there + "/30", "dev", inner))
                    .isZero();
            assertThat(run(10, "ip", "netns", "exec", ns, "ip", "link", "set", inner, "up"))
                    .isZero();
            assertThat(run(10, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"))
                    .isZero();
            TestCerts certs = TestCerts.make(dir.resolve("certs"), "ip:" + here, "ip:" + there);
            Path raw = Fixtures.raw(dir, "raw", SIZE, 61);
            GmemProcess.Started server = GmemProcess.start(
                    dir,
                    List.of("ip", "netns", "exec", ns),
                    GmemProcess.classPath(),
                    "serve",
                    "--listen",
                    there + ":7411",
                    "--memory",
                    raw.toString(),
                    "--tls-p12",
                    certs.p12("server").toString(),
                    "--tls-password-file",
                    certs.passwordFile().toString(),
                    "--tls-ca",
                    certs.ca().toString(),
                    "--json");
            started.add(server.process());
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (!Files.readString(server.out()).contains("\"ready\"") && System.nanoTime() < deadline) {
                assertThat(server.process().isAlive())
                        .as(Files.readString(server.err()))
                        .isTrue();
                Thread.sleep(20);
            }
            try (FaultProxy proxy = new FaultProxy(
                    new InetSocketAddress(here, 0), new InetSocketAddress(there, 7411), 1.0, 48L << 20)) {
                String source = "tcp://" + here + ":" + proxy.address().getPort();
                // a client whose certificate the server's CA did not sign: refused, clearly; the server serves on
                GmemProcess.Result rogue = GmemProcess.run(
                        Duration.ofSeconds(60),
                        dir,
                        "restore",
                        source,
                        "--export",
                        dir.resolve("rogue.mem").toString(),
                        "--tls-cert",
                        certs.cert("rogue").toString(),
                        "--tls-key",
                        certs.key("rogue").toString(),
                        "--tls-ca",
                        certs.ca().toString());
                assertThat(rogue.exit()).as(rogue.toString()).isEqualTo(1);
                assertThat(rogue.err()).contains("the gmem source at " + here).contains("certificate");
                for (String check : new String[] {"--verify", "--check-guest"}) {
                    if (check.equals("--check-guest") && !Host.report().kvm().available()) {
                        System.out.println("postcopy netns test: --check-guest skipped: "
                                + Host.report().kvm().reason());
                        continue;
                    }
                    int resetsBefore = proxy.resets();
                    int connectionsBefore = proxy.connections();
                    AtomicBoolean done = new AtomicBoolean();
                    // the chaos begins once the restore has its two connections (control and push), so that
                    // the resets meet sessions that carry pages, not only the restore's first attempts
                    Thread chaos = Thread.ofPlatform().daemon().start(() -> {
                        try {
                            long connectBy = System.nanoTime() + 60_000_000_000L;
                            while (proxy.connections() < connectionsBefore + 2
                                    && !done.get()
                                    && System.nanoTime() < connectBy) Thread.sleep(5);
                            Thread.sleep(300); // their handshakes and the map
                            proxy.chaos(rnd, done, 10, 4, 1500, 150, 150).join();
                        } catch (InterruptedException e) {
                            Thread.currentThread().interrupt();
                        }
                    });
                    GmemProcess.Result r;
                    long t0 = System.nanoTime();
                    try {
                        r = GmemProcess.run(
                                Duration.ofSeconds(240),
                                dir,
                                "restore",
                                source,
                                "--mode",
                                "lazy",
                                check,
                                "--peer-timeout",
                                "800",
                                "--tls-cert",
                                certs.cert("client").toString(),
                                "--tls-key",
                                certs.key("client").toString(),
                                "--tls-ca",
                                certs.ca().toString(),
                                "--json");
                    } finally {
                        done.set(true);
                        chaos.join(15_000);
                    }
                    assertThat(r.timedOut()).as(r.toString()).isFalse();
                    assertThat(r.exit()).as(r.toString()).isZero();
                    tools.jackson.databind.JsonNode j = Json.mapper().readTree(r.out());
                    if (check.equals("--verify"))
                        assertThat(j.path("verify").path("wrong_pages").asLong(-1))
                                .isZero();
                    else
                        assertThat(j.path("guest_check").path("status").asString())
                                .as(r.out())
                                .isEqualTo("passed");
                    assertThat(j.path("stats").path("complete").asBoolean()).isTrue();
                    long reconnects = r.err()
                            .lines()
                            .filter(l -> l.contains(": reconnected;"))
                            .count();
                    // a reset that lands while a connection is being made (a reconnection's handshake) is
                    // recovered from by trying again, not by a reconnection
                    long retries = r.err()
                            .lines()
                            .filter(l -> l.endsWith("; trying again"))
                            .count();
                    System.out.println("postcopy netns test: " + check + ": " + (proxy.resets() - resetsBefore)
                            + " resets and a stall, " + reconnects + " reconnections and " + retries
                            + " connections tried again, exit 0, no wrong page, in "
                            + (System.nanoTime() - t0) / 1_000_000 + " ms");
                    assertThat(proxy.resets() - resetsBefore)
                            .as("the restore outlasted the resets")
                            .isEqualTo(10);
                    assertThat(reconnects).as(r.err()).isGreaterThanOrEqualTo(5);
                    // the stall noticed: on a connection that carried pages, in a reconnection's TLS handshake, or
                    // while its map was awaited
                    assertThat(r.err()).containsAnyOf("silent for 800 ms", "sent no map within 800 ms");
                }
            }
            assertThat(Files.readString(server.err()))
                    .as("the server logged the refused client")
                    .containsAnyOf("certificate", "PKIX", "handshake");
            new ProcessBuilder("kill", "-TERM", Long.toString(server.process().pid()))
                    .start()
                    .waitFor(10, TimeUnit.SECONDS);
            GmemProcess.Result end = server.await(Duration.ofSeconds(30));
            assertThat(end.timedOut()).isFalse();
        } finally {
            for (Process p : started) {
                p.descendants().forEach(ProcessHandle::destroyForcibly);
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
            run(10, "ip", "netns", "del", ns); // its end of the veth pair goes with it, and so the pair
            run(10, "ip", "link", "del", outer);
        }
    }

    /** Runs a command, bounded; its exit status (-1 on a time-out). */
    private static int run(int seconds, String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            return -1;
        }
        p.getInputStream().readAllBytes();
        return p.exitValue();
    }
}
