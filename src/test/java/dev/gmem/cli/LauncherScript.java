package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs a function of one of the launcher's sourced scripts in bash, as the launcher does. */
final class LauncherScript {
    private LauncherScript() {}

    /**
     * Sources {@code script}, calls {@code function} on {@code args} and answers the value it left
     * in {@code variable}; a bash that fails or does not answer in 20 s fails the test.
     */
    static String answer(Path script, String function, String variable, String... args)
            throws IOException, InterruptedException {
        assertThat(script).isRegularFile();
        List<String> cmd = new ArrayList<>(List.of(
                "bash",
                "-c",
                "set -euo pipefail; . \"$0\"; " + function + " \"$@\"; echo \"$" + variable + "\"",
                script.toString()));
        cmd.addAll(List.of(args));
        Path out = Files.createTempFile("gmem-launcher", ".txt");
        try {
            Process p = new ProcessBuilder(cmd)
                    .redirectErrorStream(true)
                    .redirectOutput(out.toFile())
                    .start();
            if (!p.waitFor(20, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
                throw new AssertionError("bash did not answer in 20 s");
            }
            String said = Files.readString(out, StandardCharsets.UTF_8).strip();
            assertThat(p.exitValue()).as("bash: " + said).isZero();
            return said;
        } finally {
            Files.deleteIfExists(out);
        }
    }
}
