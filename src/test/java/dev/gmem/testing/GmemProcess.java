package dev.gmem.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A real gmem command line in a child JVM, run from a working directory of the test's, with the
 * JVM's crash log ({@code hs_err_pid*.log}) sent there so that a crash is seen. Optionally behind a
 * prefix (another user with setpriv, a mount namespace with unshare). Every child is reaped: on
 * its time-out it is killed, and the result says so.
 */
public final class GmemProcess {
    private GmemProcess() {}

    /** A finished command: its exit status (-1 when it was killed on time-out) and what it printed. */
    public record Result(int exit, String out, String err, boolean timedOut, List<String> command) {
        /** The non-empty lines of standard error. */
        public List<String> errLines() {
            return err.lines().filter(l -> !l.isBlank()).toList();
        }

        @Override
        public String toString() {
            return "exit " + exit + (timedOut ? " (killed on time-out)" : "") + " of " + String.join(" ", command)
                    + "\n--- stderr:\n" + err + "--- stdout:\n" + out;
        }
    }

    /** The class path the child runs on: the test JVM's own. */
    public static String classPath() {
        return System.getProperty("surefire.test.class.path", System.getProperty("java.class.path"));
    }

    /** The child's java command and gmem's arguments, on {@code classPath}, crash logs into {@code workDir}. */
    public static List<String> command(Path workDir, String classPath, String... args) {
        return javaCommand(workDir, classPath, "dev.gmem.cli.Main", args);
    }

    /** The child's java command running {@code mainClass} with {@code args}, crash logs into {@code workDir}. */
    public static List<String> javaCommand(Path workDir, String classPath, String mainClass, String... args) {
        List<String> cmd = new ArrayList<>(List.of(
                ProcessHandle.current().info().command().orElse("java"),
                "--enable-native-access=ALL-UNNAMED",
                "-XX:ErrorFile=" + workDir.resolve("hs_err_pid%p.log"),
                "-XX:TieredStopAtLevel=1",
                "-cp",
                classPath,
                mainClass));
        cmd.addAll(List.of(args));
        return cmd;
    }

    /** Starts {@code prefix + java ... gmem args} in {@code workDir}, stdout and stderr to files there. */
    public static Started start(Path workDir, List<String> prefix, String classPath, String... args)
            throws IOException {
        List<String> cmd = new ArrayList<>(prefix);
        cmd.addAll(command(workDir, classPath, args));
        return started(workDir, cmd);
    }

    /** Starts {@code java ... mainClass args} (a class of the test class path) in {@code workDir}. */
    public static Started startMain(Path workDir, String mainClass, String... args) throws IOException {
        return started(workDir, javaCommand(workDir, classPath(), mainClass, args));
    }

    private static Started started(Path workDir, List<String> cmd) throws IOException {
        return started(workDir, cmd, java.util.Map.of());
    }

    private static Started started(Path workDir, List<String> cmd, java.util.Map<String, String> env)
            throws IOException {
        Path out = Files.createTempFile(workDir, "out", ".txt");
        Path err = Files.createTempFile(workDir, "err", ".txt");
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().putAll(env);
        Process p = pb.directory(workDir.toFile())
                .redirectOutput(out.toFile())
                .redirectError(err.toFile())
                .start();
        return new Started(p, out, err, cmd);
    }

    /** Starts gmem with {@code args} and {@code env} added to the environment, in {@code workDir}. */
    public static Started start(Path workDir, java.util.Map<String, String> env, String... args) throws IOException {
        return started(workDir, command(workDir, classPath(), args), env);
    }

    /** Runs gmem with {@code args} and {@code env} added to the environment, in {@code workDir}, for {@code timeout} at most. */
    public static Result run(Duration timeout, Path workDir, java.util.Map<String, String> env, String... args)
            throws IOException {
        return started(workDir, command(workDir, classPath(), args), env).await(timeout);
    }

    /** Runs gmem with {@code args} in {@code workDir} and waits at most {@code timeout}. */
    public static Result run(Duration timeout, Path workDir, String... args) throws IOException {
        return start(workDir, List.of(), classPath(), args).await(timeout);
    }

    /** A running child. {@link #await} reaps it whatever happens. */
    public record Started(Process process, Path out, Path err, List<String> command) {
        public Result await(Duration timeout) throws IOException {
            boolean done;
            try {
                done = process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                done = false;
            }
            if (!done) {
                process.descendants().forEach(ProcessHandle::destroyForcibly);
                process.destroyForcibly();
                try {
                    process.waitFor(10, TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            Result r = new Result(
                    done ? process.exitValue() : -1,
                    Files.readString(out, StandardCharsets.UTF_8),
                    Files.readString(err, StandardCharsets.UTF_8),
                    !done,
                    command);
            Files.deleteIfExists(out);
            Files.deleteIfExists(err);
            return r;
        }

        /** Whether the child's standard error so far contains {@code text}. */
        public boolean errContains(String text) {
            try {
                return Files.readString(err, StandardCharsets.UTF_8).contains(text);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }

    /** JVM crash logs in {@code dir}. */
    public static List<Path> crashLogs(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.filter(p -> p.getFileName().toString().startsWith("hs_err"))
                    .toList();
        }
    }
}
