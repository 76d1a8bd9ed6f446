package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.JsonNode;

class BenchCommandTest {
    @Test
    void populateReportsTheDocumentedJson() {
        ProbeCommandTest.Run r = ProbeCommandTest.run(
                "bench",
                "populate",
                "--size",
                "2M",
                "--repeat",
                "1",
                "--backend",
                "memfd",
                "--strategy",
                "write",
                "--threads",
                "1",
                "--no-c-reference",
                "--warm",
                "0",
                "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode root = Json.mapper().readTree(r.out());
        assertThat(root.get("size_bytes").asLong()).isEqualTo(2L << 20);
        List<String> rows = new ArrayList<>();
        for (JsonNode x : root.get("results")) {
            rows.add(x.get("backend").asString() + "/" + x.get("strategy").asString() + "/"
                    + x.get("threads").asInt());
            for (String key : List.of("median_ms", "min_ms", "max_ms", "gib_per_s", "vs_baseline")) {
                assertThat(x.get(key).asDouble()).as(key).isPositive();
            }
        }
        assertThat(rows).containsExactly("memfd/mapped-copy/1", "memfd/write/1");
        assertThat(root.get("results").get(0).get("vs_baseline").asDouble()).isEqualTo(1.0);
        assertThat(root.get("chosen").get("memfd").get("strategy").asString()).isEqualTo("write");
        assertThat(root.get("chosen").get("memfd").get("reason").asString()).isNotBlank();
    }

    @Test
    void restoreReportsPackDenseAndSparse(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        JsonNode root = benchJson(
                dir, "restore", "--size", "1M", "--proportion-size", "2M", "--repeat", "1", "--backend", "memfd");
        List<String> rows = new ArrayList<>();
        for (JsonNode x : root.get("results")) {
            rows.add(x.get("what").asString() + "/" + x.get("guest_bytes").asLong());
            assertThat(x.get("median_ms").asDouble()).isPositive();
            assertThat(x.get("gib_per_s").asDouble()).isPositive();
        }
        assertThat(rows)
                .containsExactly(
                        "pack/1048576", "restore dense/1048576", "restore dense/2097152", "restore sparse/2097152");
        assertThat(root.get("sparse_vs_dense").get("memfd").asDouble()).isPositive();
        assertNothingLeft(dir);
    }

    @Test
    void lazyReportsEveryTarget(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        dev.gmem.testing.Host.assumeUserfaultfd();
        JsonNode root = benchJson(
                dir,
                "lazy",
                "--size",
                "2M",
                "--small",
                "2M",
                "--large",
                "8M",
                "--uffd-mode",
                "missing",
                "--repeat",
                "1",
                "--runs",
                "2");
        assertThat(root.get("ready")).hasSize(2);
        assertThat(root.get("ready").get(1).get("guest_bytes").asLong()).isEqualTo(8L << 20);
        assertThat(root.get("faults").get(0).get("faults").asLong()).isEqualTo(512);
        assertThat(root.get("faults").get(0).get("service").get("p50_us").asDouble())
                .isPositive();
        assertThat(root.get("prefetch").get(0).get("gib_per_s").asDouble()).isPositive();
        assertThat(root.get("stress").get(0).get("wrong_pages").asLong()).isZero();
        assertThat(root.get("stress").get(0).get("pages_read").asLong()).isEqualTo(2 * 512);
        assertNothingLeft(dir);
    }

    @Test
    @org.junit.jupiter.api.Timeout(120)
    void postcopyReportsEveryPathAndTheInstallFloor(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        dev.gmem.testing.Host.assumeUserfaultfd();
        JsonNode root = benchJson(dir, "postcopy", "--size", "64M", "--rounds", "1", "--touches", "200");
        long data = root.get("data_bytes").asLong();
        assertThat(data).isPositive().isLessThan(64L << 20);
        assertThat(root.get("latency")).hasSize(5);
        for (JsonNode l : root.get("latency"))
            assertThat(l.get("p50_us").asDouble()).isPositive();
        assertThat(root.get("echo")).hasSize(2);
        assertThat(root.get("push")).hasSize(4);
        for (JsonNode p : root.get("push")) assertRate(p.get("median_gib_per_s"), p.get("median_resident_ms"), data);
        JsonNode floor = root.get("install_floor");
        assertRate(floor.get("median_gib_per_s"), floor.get("median_ms"), data);
        assertThat(root.get("resident")).hasSize(2);
        assertThat(root.get("resident").get(0).get("reconnects").asInt()).isZero();
        assertNothingLeft(dir);
    }

    /**
     * Runs {@code gmem bench ARGS --warm 0 --dir DIR --json} in this process, and returns its JSON once it
     * exited 0.
     */
    private static JsonNode benchJson(java.nio.file.Path dir, String... args) throws Exception {
        List<String> all = new ArrayList<>(List.of("bench"));
        all.addAll(List.of(args));
        all.addAll(List.of("--warm", "0", "--dir", dir.toString(), "--json"));
        ProbeCommandTest.Run r = ProbeCommandTest.run(all.toArray(String[]::new));
        assertThat(r.exit()).as(r.err()).isZero();
        return Json.mapper().readTree(r.out());
    }

    private static void assertNothingLeft(java.nio.file.Path dir) throws java.io.IOException {
        try (var left = java.nio.file.Files.list(dir)) {
            assertThat(left.toList()).as("the benchmark removes its files").isEmpty();
        }
    }

    /** A reported rate is the bytes over the reported time, both rounded to 3 decimals. */
    private static void assertRate(JsonNode gibPerS, JsonNode ms, long bytes) {
        assertThat(ms.asDouble()).isPositive();
        double expected = bytes / (double) (1L << 30) / (ms.asDouble() / 1000);
        assertThat(gibPerS.asDouble())
                .isCloseTo(expected, org.assertj.core.data.Offset.offset(0.001 + expected * 0.001));
    }

    @Test
    void badArgumentsAreRefusedWithUsage() {
        ProbeCommandTest.Run r = ProbeCommandTest.run("bench", "populate", "--strategy", "teleport");
        assertThat(r.exit()).isEqualTo(2);
        assertThat(r.err()).contains("unknown strategy 'teleport'").contains("mapped-copy");
        assertThat(ProbeCommandTest.run("bench", "populate", "--size", "12X").err())
                .contains("is not a size");
        assertThat(ProbeCommandTest.run("bench", "populate", "--backend", "disk")
                        .err())
                .contains("--backend must be kernel, memfd or all");
        assertThat(ProbeCommandTest.run("bench", "populate", "--threads", "0").exit())
                .isEqualTo(2);
        ProbeCommandTest.Run compare = ProbeCommandTest.run("bench", "qemu", "--compare", "/nonexistent/gmem");
        assertThat(compare.exit()).isEqualTo(2);
        assertThat(compare.err()).contains("--compare: /nonexistent/gmem is not an executable gmem launcher");
    }

    @Test
    void sizesParseAndFormat() {
        assertThat(Sizes.parse("4096")).isEqualTo(4096);
        assertThat(Sizes.parse("64K")).isEqualTo(65536);
        assertThat(Sizes.parse("512M")).isEqualTo(512L << 20);
        assertThat(Sizes.parse("3G")).isEqualTo(3L << 30);
        assertThat(Sizes.parse("3GiB")).isEqualTo(3L << 30);
        assertThat(Sizes.format(512L << 20)).isEqualTo("512 MiB");
        assertThat(Sizes.format(1536)).isEqualTo("1.5 KiB");
    }

    /** bench start times real gmem processes: here through a launcher script that runs this build's classes. */
    @Test
    void startTimesColdProcessesAgainstJavaVersion(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir)
            throws Exception {
        java.nio.file.Path launcher = dir.resolve("gmem");
        java.nio.file.Files.writeString(
                launcher,
                "#!/bin/sh\nexec '" + ProcessHandle.current().info().command().orElse("java")
                        + "' --enable-native-access=ALL-UNNAMED -cp '" + dev.gmem.testing.GmemProcess.classPath()
                        + "' dev.gmem.cli.Main \"$@\"\n");
        java.nio.file.Files.setPosixFilePermissions(
                launcher, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
        ProbeCommandTest.Run r = ProbeCommandTest.run(
                "bench",
                "start",
                "--runs",
                "1",
                "--size",
                "16M",
                "--data",
                "2M",
                "--launcher",
                launcher.toString(),
                "--dir",
                dir.toString(),
                "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        tools.jackson.databind.JsonNode j = Json.mapper().readTree(r.out());
        assertThat(j.get("java_version").get("median_ms").asDouble()).isPositive();
        tools.jackson.databind.JsonNode l = j.get("launchers").get(0);
        assertThat(l.get("commands")).hasSize(3);
        assertThat(l.get("restore_work_ms").asDouble()).isPositive();
        // the release of the restore's memory is reported, and counted as its work
        assertThat(l.get("release_ms").asDouble())
                .isPositive()
                .isLessThan(l.get("restore_work_ms").asDouble());
        assertThat(l.get("overhead_ratio").asDouble()).isPositive();
        try (var left = java.nio.file.Files.list(dir)) {
            assertThat(left.map(p -> p.getFileName().toString()).toList()).containsExactly("gmem");
        }
    }
}
