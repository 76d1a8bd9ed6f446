package dev.gmem.cli;

import static dev.gmem.cli.ProbeCommandTest.run;
import static org.assertj.core.api.Assertions.assertThat;

import java.nio.file.Path;

/** Inputs made through the command line itself, for the command tests. */
final class CliFixtures {
    private CliFixtures() {}

    /** A synthetic image of {@code size} at {@code dir/raw.mem}, packed into {@code dir/s.snap}: the snapshot's path. */
    static String packed(Path dir, String size) {
        String raw = dir.resolve("raw.mem").toString();
        assertThat(run("image", "synth", "--size", size, "-o", raw).exit()).isZero();
        String snap = dir.resolve("s.snap").toString();
        assertThat(run("snapshot", "pack", raw, "-o", snap).exit()).isZero();
        return snap;
    }
}
