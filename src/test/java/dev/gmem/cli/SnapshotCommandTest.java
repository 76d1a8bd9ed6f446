package dev.gmem.cli;

import static dev.gmem.cli.ProbeCommandTest.run;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

class SnapshotCommandTest {
    @TempDir
    Path dir;

    /** A synthetic image and its snapshot in {@code dir}, through the commands; returns the snapshot's path. */
    static String synthAndPack(Path dir, String size) {
        String raw = dir.resolve("raw.mem").toString();
        String snap = dir.resolve("s.snap").toString();
        assertThat(run("image", "synth", "--size", size, "-o", raw).exit()).isZero();
        assertThat(run("snapshot", "pack", raw, "-o", snap).exit()).isZero();
        return snap;
    }

    static List<String> names(JsonNode n) {
        List<String> out = new ArrayList<>();
        n.propertyNames().forEach(out::add);
        return out;
    }

    @Test
    void synthPackInspectVerifyUnpackRestore() throws Exception {
        String raw = dir.resolve("raw.mem").toString();
        String snap = dir.resolve("s.snap").toString();
        ProbeCommandTest.Run synth = run("image", "synth", "--size", "4M", "--seed", "5", "-o", raw, "--json");
        assertThat(synth.exit()).as(synth.err()).isZero();
        JsonNode s = Json.mapper().readTree(synth.out());
        assertThat(s.get("size").asLong()).isEqualTo(4 << 20);

        ProbeCommandTest.Run pack = run("snapshot", "pack", raw, "-o", snap, "--compress", "zstd", "--json");
        assertThat(pack.exit()).as(pack.err()).isZero();
        assertThat(Json.mapper().readTree(pack.out()).get("data_pages").asLong())
                .isEqualTo(s.get("duplicate_pages").asLong()
                        + s.get("text_pages").asLong()
                        + s.get("random_pages").asLong());

        ProbeCommandTest.Run inspect = run("snapshot", "inspect", snap, "--json");
        assertThat(inspect.exit()).isZero();
        JsonNode i = Json.mapper().readTree(inspect.out());
        assertThat(names(i))
                .contains(
                        "format_version",
                        "regions",
                        "data_pages",
                        "zero_pages",
                        "hole_pages",
                        "compression_ratio",
                        "chunks_by_codec");
        assertThat(i.get("zero_pages").asLong()).isEqualTo(s.get("zero_pages").asLong());
        assertThat(i.get("hole_pages").asLong()).isEqualTo(s.get("hole_pages").asLong());
        assertThat(i.get("compression_ratio").asDouble()).isGreaterThan(1.0);
        assertThat(run("snapshot", "inspect", snap).out())
                .contains("pages: 1024")
                .contains("compression ratio");

        ProbeCommandTest.Run verify = run("snapshot", "verify", snap);
        assertThat(verify.exit()).isZero();
        assertThat(verify.out()).contains(": ok,");

        String back = dir.resolve("back.mem").toString();
        assertThat(run("snapshot", "unpack", snap, "-o", back).exit()).isZero();
        assertThat(Files.mismatch(Path.of(raw), Path.of(back))).isEqualTo(-1);

        ProbeCommandTest.Run restore = run("restore", snap, "--verify", "--json");
        assertThat(restore.exit()).as(restore.err()).isZero();
        JsonNode r = Json.mapper().readTree(restore.out());
        assertThat(names(r)).contains("bytes_restored", "pages", "strategy", "elapsed_ms", "gib_per_s", "verified");
        assertThat(r.get("verified").asBoolean()).isTrue();
        assertThat(r.get("pages").get("data").asLong())
                .isEqualTo(i.get("data_pages").asLong());
        assertThat(run("restore", raw, "--verify").out()).contains("verified: every page matches");
    }

    @Test
    void lazyRestoreVerifiesWhilePrefetching() throws Exception {
        dev.gmem.testing.Host.assumeUserfaultfd();
        String snap = synthAndPack(dir, "4M");
        for (String mode : List.of("missing", "minor")) {
            if (mode.equals("minor")) dev.gmem.testing.Host.assumeMinorOnMemfd();
            ProbeCommandTest.Run r = run("restore", snap, "--mode", "lazy", "--uffd-mode", mode, "--verify", "--json");
            assertThat(r.exit()).as(r.err()).isZero();
            JsonNode j = Json.mapper().readTree(r.out());
            assertThat(j.get("stats").get("mode").asString()).isEqualTo(mode);
            assertThat(j.get("stats").get("complete").asBoolean()).isTrue();
            assertThat(names(j.get("stats")))
                    .contains(
                            "faults",
                            "fault_pages",
                            "prefetch_pages",
                            "zero_pages",
                            "latency",
                            "blocked_ms",
                            "ready_ms",
                            "populated_ms",
                            "prefetch_gib_per_s");
            assertThat(names(j.get("stats").get("latency")))
                    .containsExactly("count", "p50_us", "p90_us", "p99_us", "max_us", "mean_us");
            assertThat(j.get("verify").get("pages").asLong()).isEqualTo(1024);
            assertThat(j.get("verify").get("wrong_pages").asLong()).isZero();
        }
        assertThat(run("restore", snap, "--mode", "lazy", "--uffd-mode", "major")
                        .err())
                .contains("unknown userfaultfd mode 'major'");
        assertThat(run("restore", snap, "--mode", "sideways").err()).contains("--mode must be eager or lazy");
    }

    @Test
    void badInputFailsWithOneClearLine() throws Exception {
        String raw = dir.resolve("raw.mem").toString();
        String snap = CliFixtures.packed(dir, "2M");
        byte[] b = Files.readAllBytes(Path.of(snap));
        b[4096 + 10] ^= 1; // the first chunk's data
        Files.write(Path.of(snap), b);
        ProbeCommandTest.Run v = run("snapshot", "verify", snap);
        assertThat(v.exit()).isEqualTo(4);
        assertThat(v.err()).contains("checksum mismatch").contains(snap).contains("chunk 0");
        ProbeCommandTest.Run r = run("restore", snap);
        assertThat(r.exit()).isEqualTo(4);
        assertThat(r.err()).contains("checksum mismatch");

        assertThat(run("snapshot", "pack", raw, "-o", snap, "--compress", "brotli")
                        .err())
                .contains("unknown compression 'brotli'");
        assertThat(run("snapshot", "pack", raw, "-o", snap, "--regions", "0:1M").err())
                .contains("regions add up to 1048576");
        assertThat(run("snapshot", "pack", raw, "-o", snap, "--regions", "0:1M,0x80000:1M")
                        .err())
                .contains("regions overlap");
        assertThat(run(
                                "restore",
                                raw,
                                "--backend",
                                "kernel",
                                "--export",
                                dir.resolve("x").toString())
                        .err())
                .contains("--export needs the memfd backend");
        assertThat(run("snapshot", "inspect", raw).err()).contains("not a gmem snapshot");
        assertThat(run("image", "synth", "--size", "1M", "--zero", "80%", "--hole", "30%", "-o", raw)
                        .err())
                .contains("more than 100%");
    }

    @Test
    void outputsNeverGoThroughOrOverWhatGmemWasNotAskedToWrite() throws Exception {
        String raw = dir.resolve("raw.mem").toString();
        String snap = CliFixtures.packed(dir, "2M");
        byte[] before = Files.readAllBytes(Path.of(snap));

        ProbeCommandTest.Run device = run("snapshot", "pack", raw, "-o", "/dev/null");
        assertThat(device.exit()).isEqualTo(1);
        assertThat(device.err()).contains("/dev/null: is not a regular file");
        assertThat(Files.isRegularFile(Path.of("/dev/null"), java.nio.file.LinkOption.NOFOLLOW_LINKS))
                .isFalse();

        ProbeCommandTest.Run self = run("snapshot", "unpack", snap, "-o", snap);
        assertThat(self.exit()).isEqualTo(1);
        assertThat(self.err()).contains("is also the input");
        assertThat(Files.readAllBytes(Path.of(snap))).isEqualTo(before);

        Path link = dir.resolve("planted");
        Files.createSymbolicLink(link, Path.of(raw));
        ProbeCommandTest.Run through = run("image", "synth", "--size", "1M", "-o", link.toString());
        assertThat(through.exit()).isEqualTo(1);
        assertThat(through.err()).contains("symbolic link");
        assertThat(Files.size(Path.of(raw))).isEqualTo(2 << 20);

        ProbeCommandTest.Run empty = run("restore", snap, "--export", "");
        assertThat(empty.exit()).isEqualTo(ExitCode.USAGE.status);
        assertThat(empty.err())
                .isEqualTo(
                        "gmem restore: Invalid value for option '--export': an empty path names no file (see 'gmem restore --help')\n");
        assertThat(dev.gmem.testing.Leaks.partials(dir)).isEmpty();
    }
}
