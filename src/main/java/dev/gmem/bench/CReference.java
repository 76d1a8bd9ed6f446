package dev.gmem.bench;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
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
        return CProgram.build("pwrite_memfd", List.of(), whyNot).map(CReference::new);
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
