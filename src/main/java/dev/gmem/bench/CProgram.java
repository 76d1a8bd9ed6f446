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
 * One of gmem's bundled C programs ({@code src/main/resources/bench/NAME.c}: the references the
 * benchmarks measure gmem against, and the test VMM), compiled with the host's C compiler into a
 * temporary directory that is removed when the JVM exits.
 */
public final class CProgram {
    private CProgram() {}

    /**
     * Compiles {@code name}.c with {@code -O2} and {@code flags}; returns its binary, or adds one
     * line to {@code whyNot} (no C compiler, or what it said).
     */
    public static Optional<Path> build(String name, List<String> flags, List<String> whyNot) {
        try {
            Path dir = Files.createTempDirectory("gmem-" + name.replace('_', '-'));
            dir.toFile().deleteOnExit();
            Path source = dir.resolve(name + ".c");
            try (InputStream in = CProgram.class.getResourceAsStream("/bench/" + name + ".c")) {
                if (in == null) throw new IOException("the jar has no /bench/" + name + ".c");
                Files.copy(in, source);
            }
            source.toFile().deleteOnExit();
            Path binary = dir.resolve(name);
            List<String> command = new ArrayList<>(List.of("cc", "-O2"));
            command.addAll(flags);
            command.addAll(List.of("-o", binary.toString(), source.toString()));
            Process cc = new ProcessBuilder(command).redirectErrorStream(true).start();
            String out = new String(cc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!cc.waitFor(60, TimeUnit.SECONDS) || cc.exitValue() != 0) {
                cc.destroyForcibly();
                whyNot.add("cc failed to build " + name + ": " + out.strip());
                return Optional.empty();
            }
            binary.toFile().deleteOnExit();
            return Optional.of(binary);
        } catch (IOException e) {
            whyNot.add("no C compiler to build " + name + " (" + e.getMessage() + "); install gcc");
            return Optional.empty();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            whyNot.add("interrupted while building " + name);
            return Optional.empty();
        }
    }
}
