package dev.gmem.bench;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

/**
 * The C pwrite reference: gmem's bundled C program, compiled with the host's C compiler into a
 * temporary directory and run as a child process, so Java and C are measured in one run.
 */
public final class CReference {
    private final Path binary;

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
            Process cc = new ProcessBuilder("cc", "-O2", "-o", binary.toString(), source.toString()).redirectErrorStream(true).start();
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

    /** Runs the reference {@code runs} times over {@code size} bytes; returns each run's milliseconds. */
    public List<Double> run(long size, int runs) throws IOException {
        Process p = new ProcessBuilder(binary.toString(), Long.toString(size), Integer.toString(runs)).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (p.waitFor() != 0) throw new IOException("the C reference failed: " + err.strip());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while running the C reference", e);
        }
        List<Double> ms = new ArrayList<>();
        for (String line : out.strip().split("\n")) ms.add(Double.parseDouble(line.strip()));
        return ms;
    }
}
