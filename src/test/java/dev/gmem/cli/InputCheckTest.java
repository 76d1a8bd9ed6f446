package dev.gmem.cli;

import static dev.gmem.cli.ProbeCommandTest.run;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Inputs that are missing, dangling, special, not text, or damaged snapshots: one line naming the file and the reason, and the right exit status. */
class InputCheckTest {
    @TempDir
    Path dir;

    static void oneLine(ProbeCommandTest.Run r, int status, String... parts) {
        assertThat(r.exit()).as(r.err()).isEqualTo(status);
        assertThat(r.err().strip().lines()).hasSize(1);
        for (String p : parts) assertThat(r.err()).contains(p);
    }

    @Test
    void missingDanglingAndSpecialInputsSayWhy() throws Exception {
        Path missing = dir.resolve("missing.snap");
        oneLine(run("restore", missing.toString()), 1, missing + ": no such file");
        oneLine(run("snapshot", "verify", missing.toString()), 1, "no such file");
        Path link = dir.resolve("dangling.snap");
        Files.createSymbolicLink(link, dir.resolve("gone"));
        oneLine(run("restore", link.toString()), 1, "dangling symbolic link");
        oneLine(run("snapshot", "pack", dir.toString(), "-o", dir.resolve("x").toString()), 1, "is a directory");
        oneLine(run("restore", "/dev/null"), 1, "/dev/null: is not a regular file");
        oneLine(run("restore", ""), ExitCode.USAGE.status, "SNAPSHOT|RAW", "an empty path names no file");
    }

    @Test
    void anAccessOrderThatIsNotTextSaysSo() throws Exception {
        String raw = dir.resolve("raw.mem").toString();
        assertThat(run("image", "synth", "--size", "2M", "-o", raw).exit()).isZero();
        Path order = Files.write(dir.resolve("order.bin"), new byte[] {(byte) 0xff, (byte) 0xfe, 0, 1, 2});
        oneLine(
                run(
                        "snapshot",
                        "pack",
                        raw,
                        "-o",
                        dir.resolve("s.snap").toString(),
                        "--access-order",
                        order.toString()),
                1,
                order + ": not text");
    }

    @Test
    void aSnapshotWithADamagedHeaderIsNeverRestoredAsARawFile() throws Exception {
        String snap = CliFixtures.packed(dir, "2M");
        byte[] b = Files.readAllBytes(Path.of(snap));
        b[0] ^= 0x20; // the first byte of the magic
        Files.write(Path.of(snap), b);
        oneLine(
                run("restore", snap),
                ExitCode.BAD_INPUT.status,
                "a damaged gmem snapshot",
                "not read as a raw memory file");
        oneLine(
                run("snapshot", "pack", snap, "-o", dir.resolve("again.snap").toString()),
                ExitCode.BAD_INPUT.status,
                "a damaged gmem snapshot");
        // the whole magic gone: the header's other fields still say snapshot
        for (int i = 0; i < 8; i++) b[i] = 'x';
        Files.write(Path.of(snap), b);
        oneLine(run("restore", snap), ExitCode.BAD_INPUT.status, "version and size of a gmem snapshot header");
        // the header wiped: the manifest at the end still says snapshot
        java.util.Arrays.fill(b, 0, 4096, (byte) 0);
        Files.write(Path.of(snap), b);
        oneLine(run("restore", snap), ExitCode.BAD_INPUT.status, "holds a gmem manifest");
        // asked for explicitly, it is read as the raw file it now is (padded to whole pages, as a raw file must be)
        Files.write(Path.of(snap), java.util.Arrays.copyOf(b, (b.length + 4095) / 4096 * 4096));
        ProbeCommandTest.Run raw = run("restore", snap, "--format", "raw");
        assertThat(raw.exit()).as(raw.err()).isZero();
        oneLine(run("restore", snap, "--format", "snapshot"), ExitCode.BAD_INPUT.status, "magic");
        assertThat(run("restore", snap, "--format", "tar").exit()).isEqualTo(ExitCode.USAGE.status);
    }

    @Test
    void aGuestCheckStrideBelowOneIsAUsageErrorInBothModes() {
        for (String mode : new String[] {"eager", "lazy"}) {
            ProbeCommandTest.Run r = run("restore", "x.snap", "--mode", mode, "--check-guest", "--check-stride", "0");
            assertThat(r.exit()).isEqualTo(ExitCode.USAGE.status);
            assertThat(r.err()).contains("--check-stride must be at least 1");
        }
    }
}
