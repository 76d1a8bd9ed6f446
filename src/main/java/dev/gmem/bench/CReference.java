package dev.gmem.bench;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * The C pwrite reference: gmem's bundled C program, compiled with the host's C compiler into a
 * temporary directory and kept running as one child process with a warm source buffer, which
 * does one timed run each time it is asked, so its runs interleave with gmem's own.
 */
public final class CReference implements AutoCloseable {
    private final Path binary;
    private Process process;
    private java.io.BufferedReader output;
    private java.io.Writer input;

    private CReference(Path binary) {
        this.binary = binary;
    }

    /** Compiles the reference, or says why it cannot (no C compiler). */
    public static Optional<CReference> build(List<String> whyNot) {
        try {
            Path dir = Files.createTempDirectory("gmem-c-reference");
            dir.toFile().deleteOnExit();
            Path source = dir.resolve("pwrite_memfd.c");
            try (InputStream in = CReference.class.getResourceAsStream("/bench/pwrite_memfd.c")) {
                if (in == null) throw new IOException("the jar has no /bench/pwrite_memfd.c");
                Files.copy(in, source);
            }
            Path binary = dir.resolve("pwrite_memfd");
            Process cc = new ProcessBuilder("cc", "-O2", "-o", binary.toString(), source.toString())
                    .redirectErrorStream(true)
                    .start();
            String out = new String(cc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!cc.waitFor(60, TimeUnit.SECONDS) || cc.exitValue() != 0) {
                whyNot.add("cc failed to build the C reference: " + out.strip());
                return Optional.empty();
            }
            source.toFile().deleteOnExit();
            binary.toFile().deleteOnExit();
            return Optional.of(new CReference(binary));
        } catch (IOException e) {
            whyNot.add("no C compiler to build the C reference (" + e.getMessage() + "); install gcc");
            return Optional.empty();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            whyNot.add("interrupted while building the C reference");
            return Optional.empty();
        }
    }

    /** Starts the reference over {@code size} bytes: it fills its source once and waits. */
    public void start(long size) throws IOException {
        process = new ProcessBuilder(binary.toString(), Long.toString(size))
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        output = new java.io.BufferedReader(
                new java.io.InputStreamReader(process.getInputStream(), StandardCharsets.US_ASCII));
        input = new java.io.OutputStreamWriter(process.getOutputStream(), StandardCharsets.US_ASCII);
        String ready = output.readLine();
        if (!"ready".equals(ready)) throw new IOException("the C reference did not start (it said " + ready + ")");
    }

    /** One timed run; returns its milliseconds. */
    public double run() throws IOException {
        input.write("run\n");
        input.flush();
        String line = output.readLine();
        if (line == null) throw new IOException("the C reference stopped (see its error above)");
        return Double.parseDouble(line.strip());
    }

    @Override
    public void close() throws IOException {
        if (process == null) return;
        input.close();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        process.destroyForcibly();
    }
}
