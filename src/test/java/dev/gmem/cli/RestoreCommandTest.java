package dev.gmem.cli;

import static dev.gmem.cli.ProbeCommandTest.run;
import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.probe.HostProbe;
import dev.gmem.testing.Host;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

/** gmem restore --mode lazy end to end: a good snapshot, a corrupt one (never a hang), and a host that cannot; exit statuses by error type. */
class RestoreCommandTest {
    @TempDir
    Path dir;

    @Test
    void aLazyVerifyOfASparseTebibyteNeverFaultsItsHolesIn() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = dir.resolve("tib.raw");
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(raw.toFile(), "rw")) {
            f.seek(123L << 30);
            f.write(new byte[] {1, 2, 3});
            f.setLength(1L << 40);
        }
        ProbeCommandTest.Run r = run("restore", raw.toString(), "--mode", "lazy", "--verify", "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode v = tools.jackson.databind.json.JsonMapper.builder()
                .build()
                .readTree(r.out())
                .get("verify");
        assertThat(v.get("wrong_pages").asLong()).isZero();
        assertThat(v.get("data_pages").asLong()).isEqualTo(1);
        // the data page, any resident page, and the sample: a few thousand pages of 268 million
        assertThat(v.get("pages").asLong())
                .isLessThanOrEqualTo(
                        1 + v.get("resident_other_pages").asLong() + dev.gmem.restore.RandomReaders.ABSENT_SAMPLE);
        assertThat(v.get("resident_other_pages").asLong()).isLessThan(64);
    }

    @Test
    void aLazyRestoreWithVerifyReadsEveryPageAndReportsAsJson() throws Exception {
        Host.assumeUserfaultfd();
        ProbeCommandTest.Run r = run("restore", CliFixtures.packed(dir, "8M"), "--mode", "lazy", "--verify", "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode j = tools.jackson.databind.json.JsonMapper.builder().build().readTree(r.out());
        assertThat(j.get("open_ms").asDouble()).isPositive();
        assertThat(j.get("verify").get("wrong_pages").asLong()).isZero();
        assertThat(j.get("verify").get("pages").asLong()).isEqualTo((8 << 20) / 4096);
        assertThat(j.get("stats").get("complete").asBoolean()).isTrue();
    }

    /** The eager restore's JSON keys, in the order docs/restore.md lists them: a stable interface for tools. */
    @Test
    void anEagerRestoreReportsTheDocumentedKeysAsJson() throws Exception {
        ProbeCommandTest.Run r = run("restore", CliFixtures.packed(dir, "8M"), "--verify", "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode j = tools.jackson.databind.json.JsonMapper.builder().build().readTree(r.out());
        java.util.List<String> keys = new java.util.ArrayList<>();
        j.propertyNames().forEach(keys::add);
        assertThat(keys)
                .containsExactly(
                        "source",
                        "format",
                        "backend",
                        "strategy",
                        "threads",
                        "reason",
                        "guest_bytes",
                        "bytes_restored",
                        "pages",
                        "checksum_ms",
                        "populate_ms",
                        "elapsed_ms",
                        "gib_per_s",
                        "verify_ms",
                        "verified",
                        "release_ms",
                        "export",
                        "guest_check");
        assertThat(j.get("verified").asBoolean()).isTrue();
        assertThat(j.get("release_ms").asDouble()).isPositive();
        assertThat(j.get("export").isNull()).isTrue();
    }

    @Test
    void aCorruptChunkMakesALazyVerifyExitWithBadInputNeverAHang() throws Exception {
        Host.assumeUserfaultfd();
        String snap = CliFixtures.packed(dir, "8M");
        byte[] b = Files.readAllBytes(Path.of(snap));
        b[4096 + 10] ^= 1; // the first chunk's data
        Files.write(Path.of(snap), b);
        for (String mode : new String[] {"missing", "minor"}) {
            if (mode.equals("minor")
                    && !HostProbe.host().userfaultfd().minorMemfd().available()) continue;
            long t0 = System.nanoTime();
            ProbeCommandTest.Run r = run("restore", snap, "--mode", "lazy", "--uffd-mode", mode, "--verify");
            assertThat(System.nanoTime() - t0).as("ends within 30 s").isLessThan(30_000_000_000L);
            assertThat(r.exit()).as(r.err()).isEqualTo(ExitCode.BAD_INPUT.status);
            assertThat(r.err())
                    .contains("lazy restore of")
                    .contains("checksum mismatch")
                    .contains("chunk 0")
                    .contains("guest 0x0");
            assertThat(r.err().strip().lines()).hasSize(1);
        }
    }

    @Test
    void aHostThatCannotRegisterExitsWithUnsupportedAndTheReason() {
        Host.assumeGuestMemfd();
        var g = HostProbe.host().guestMemfd().userfaultfd();
        org.junit.jupiter.api.Assumptions.assumeFalse(
                g.available(), "this kernel registers userfaultfd on guest_memfd: nothing to refuse");
        ProbeCommandTest.Run r = run("restore", CliFixtures.packed(dir, "8M"), "--mode", "lazy", "--backend", "kernel");
        assertThat(r.exit()).isEqualTo(ExitCode.UNSUPPORTED.status);
        assertThat(r.err()).contains(g.reason());
    }

    @Test
    void badOptionsAreUsageErrors() {
        assertThat(run("restore", "x.snap", "--mode", "lazy", "--uffd-mode", "sideways")
                        .exit())
                .isEqualTo(ExitCode.USAGE.status);
        assertThat(run("restore", "x.snap", "--mode", "lazy", "--on-remove", "keep")
                        .err())
                .contains("--on-remove")
                .contains("zero or refetch");
    }

    /** restore --mode lazy --metrics: the endpoint it announces serves the restore's series, final values included while it holds. */
    @Test
    void aLazyRestoreServesItsMetricsWhereItSays() throws Exception {
        Host.assumeUserfaultfd();
        String snap = CliFixtures.packed(
                dir, "64M"); // with --verify it runs a few hundred ms: long enough to be seen running
        String[] args = {
            "restore", snap, "--mode", "lazy", "--verify", "--metrics", "127.0.0.1:0", "--metrics-hold", "3", "--json"
        };
        picocli.CommandLine cl = Main.commandLine(args);
        java.io.StringWriter out = new java.io.StringWriter();
        java.io.StringWriter err = new java.io.StringWriter();
        cl.setOut(new java.io.PrintWriter(out, true));
        cl.setErr(new java.io.PrintWriter(err, true));
        java.util.concurrent.CompletableFuture<Integer> run =
                java.util.concurrent.CompletableFuture.supplyAsync(() -> cl.execute(args));
        long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(30);
        java.util.regex.Matcher m;
        while (!(m = java.util.regex.Pattern.compile("metrics at (http://\\S+)").matcher(err.toString())).find()) {
            assertThat(System.nanoTime())
                    .as("the address is announced: %s", err)
                    .isLessThan(deadline);
            assertThat(run.isDone()).as("still running: %s", err).isFalse();
            Thread.sleep(10);
        }
        java.net.URI url = java.net.URI.create(m.group(1));
        // scraped until the restore has been seen running and then over, its final values held
        java.util.Map<String, Double> series = java.util.Map.of();
        boolean seenRunning = false;
        while (System.nanoTime() < deadline && !run.isDone()) {
            series = dev.gmem.metrics.MetricsTest.scrape(url);
            boolean watched = series.containsKey("gmem_pages_total{path=prefetch,session=restore}");
            if (watched && series.get("gmem_sessions") == 1.0) seenRunning = true;
            if (watched && series.get("gmem_sessions") == 0.0) break;
            Thread.sleep(2);
        }
        assertThat(series.get("gmem_sessions"))
                .as("the restore ended while metrics were held: %s", err)
                .isEqualTo(0.0);
        assertThat(run.get(30, java.util.concurrent.TimeUnit.SECONDS))
                .as(err.toString())
                .isZero();
        JsonNode j = tools.jackson.databind.json.JsonMapper.builder().build().readTree(out.toString());
        long prefetched = j.get("stats").get("prefetch_pages").asLong();
        assertThat(series.get("gmem_pages_total{path=prefetch,session=restore}"))
                .isEqualTo((double) prefetched);
        assertThat(series.get("gmem_pages_total{path=fault,session=restore}") + prefetched)
                .isEqualTo((double) j.get("data_bytes").asLong() / 4096);
    }
}
