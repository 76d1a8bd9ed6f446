package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.testing.Leaks;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** A real gmem process interrupted while it writes: one line, exit 128 + signal, no partial file left behind. */
class SignalsTest {
    Path dir;

    @BeforeEach
    void shm() throws Exception {
        Path shm = Path.of("/dev/shm");
        dir = Files.createTempDirectory(
                Files.isDirectory(shm) ? shm : Path.of(System.getProperty("java.io.tmpdir")), "gmem-signals");
    }

    @AfterEach
    void clean() throws Exception {
        try (var files = Files.list(dir)) {
            for (Path p : files.toList()) Files.delete(p);
        }
        Files.delete(dir);
    }

    static Process gmem(Path err, String... args) throws Exception {
        List<String> cmd =
                dev.gmem.testing.GmemProcess.command(err.getParent(), dev.gmem.testing.GmemProcess.classPath(), args);
        return new ProcessBuilder(cmd)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .redirectError(err.toFile())
                .start();
    }

    @ParameterizedTest(name = "SIG{0}")
    @CsvSource({"INT, 130", "TERM, 143"})
    void anInterruptedWriterRemovesItsPartialFileAndSaysSo(String signal, int status) throws Exception {
        Path err = Files.createTempFile("gmem-signals", ".err");
        Path out = dir.resolve("big.raw");
        Process p = gmem(err, "image", "synth", "--size", "8G", "-o", out.toString());
        try {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
            while (Leaks.partials(dir).isEmpty() && p.isAlive() && System.nanoTime() < deadline) Thread.sleep(10);
            assertThat(Leaks.partials(dir))
                    .as("the writer started (stderr: %s)", Files.readString(err))
                    .isNotEmpty();
            Process kill = new ProcessBuilder("kill", "-" + signal, Long.toString(p.pid())).start();
            assertThat(kill.waitFor(10, TimeUnit.SECONDS)).isTrue();
            assertThat(p.waitFor(30, TimeUnit.SECONDS)).as("stops promptly").isTrue();
            assertThat(p.exitValue()).isEqualTo(status);
            String text = Files.readString(err, StandardCharsets.UTF_8);
            assertThat(text)
                    .contains("gmem: interrupted (SIG" + signal + ")")
                    .doesNotContain("Exception")
                    .doesNotContain("\tat ");
            assertThat(Leaks.partials(dir)).as("no partial file left").isEmpty();
            assertThat(out).doesNotExist();
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            Files.deleteIfExists(err);
        }
    }
}
