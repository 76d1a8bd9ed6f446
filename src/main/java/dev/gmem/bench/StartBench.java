package dev.gmem.bench;

import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.SnapshotWriter;
import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * How long gmem takes from process start to exit, cold: {@code gmem --version}, {@code gmem probe}
 * and an eager restore of a sparse guest, each run through the launcher as a user runs it,
 * interleaved round by round with a bare {@code java -version} of the same JDK. For the restore,
 * the wall time beyond gmem's own reported work (the restore, then the release of its memory,
 * which the kernel frees when it is closed) is set against {@code java -version}: that ratio holds
 * on a noisy machine where absolute times do not.
 */
public final class StartBench {
    private StartBench() {}

    /**
     * {@code launchers}: the gmem scripts to time, side by side (two builds, say); a guest of
     * {@code guestBytes} holding about {@code dataBytes} of data is made in {@code dir}.
     */
    public record Options(List<Path> launchers, long guestBytes, long dataBytes, int runs, Path dir) {}

    /** A command's median wall time in milliseconds, and every run's. */
    public record Command(String name, double medianMs, List<Double> runsMs) {}

    /**
     * One launcher's figures.
     *
     * @param restoreWorkMs the median of the restore's reported work: the restore, and the release of
     *     its memory afterwards
     * @param releaseMs the median of that release, or null for a build that does not report it
     * @param overheadMs the restore's median wall time minus its median reported work
     * @param overheadRatio that overhead over the median of a bare {@code java -version}
     */
    public record Launcher(
            String launcher,
            List<Command> commands,
            double restoreWorkMs,
            Double releaseMs,
            double overheadMs,
            double overheadRatio) {}

    public record Report(long guestBytes, long dataBytes, int runs, Command javaVersion, List<Launcher> launchers) {}

    private static final Pattern ELAPSED = Pattern.compile("\"elapsed_ms\"\\s*:\\s*([0-9.]+)");
    /** The release of the restore's memory, which the kernel does when it is closed (later builds report it). */
    private static final Pattern RELEASE = Pattern.compile("\"release_ms\"\\s*:\\s*([0-9.]+)");

    private static final List<String> NAMES = List.of("gmem --version", "gmem probe", "gmem restore (eager)");

    public static Report run(Options o, Consumer<String> status) throws IOException {
        for (Path l : o.launchers()) {
            if (!Files.isExecutable(l)) throw new IOException(l + ": no gmem launcher there, or it is not executable");
        }
        Path work = OutputFile.scratchDirectory(o.dir(), "gmem-bench-start-");
        try {
            Path raw = work.resolve("guest.raw");
            Path snap = work.resolve("guest.snap");
            double data = (double) o.dataBytes() / o.guestBytes();
            status.accept("making a " + (o.guestBytes() >> 20) + " MiB guest with about " + (o.dataBytes() >> 20)
                    + " MiB of data ...");
            ImageSynth.generate(raw, o.guestBytes(), new ImageSynth.Mix(1 - data - 0.08, 0.08, 0), 1, 2, b -> {});
            try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
                SnapshotWriter.pack(image, snap, dev.gmem.snapshot.Codec.NONE, new long[0], b -> {});
            }
            Files.delete(raw);
            List<String> javaVersionCommand =
                    List.of(ProcessHandle.current().info().command().orElse("java"), "-version");
            int n = o.launchers().size();
            List<Double> javaTimes = new ArrayList<>();
            double[][][] times = new double[n][NAMES.size()][o.runs()];
            double[][] workMs = new double[n][o.runs()];
            double[][] releaseMs = new double[n][o.runs()];
            boolean[] reportsRelease = new boolean[n];
            java.util.Arrays.fill(reportsRelease, true);
            for (int round = -1; round < o.runs(); round++) {
                // round -1 is untimed: afterwards the page cache, the builds and their caches are warm
                if (round >= 0) status.accept("round " + (round + 1) + " of " + o.runs() + " ...");
                Timed j = time(javaVersionCommand, work);
                if (round >= 0) javaTimes.add(j.ms());
                for (int l = 0; l < n; l++) {
                    String gmem = o.launchers().get(l).toString();
                    List<List<String>> commands = List.of(
                            List.of(gmem, "--version"),
                            List.of(gmem, "probe"),
                            List.of(gmem, "restore", snap.toString(), "--json"));
                    for (int c = 0; c < commands.size(); c++) {
                        Timed t = time(commands.get(c), work);
                        if (round < 0) continue;
                        times[l][c][round] = t.ms();
                        if (c == 2) {
                            Matcher m = ELAPSED.matcher(t.out());
                            if (!m.find()) throw new IOException(gmem + " restore printed no elapsed_ms: " + t.out());
                            Matcher r = RELEASE.matcher(t.out());
                            if (r.find()) releaseMs[l][round] = Double.parseDouble(r.group(1));
                            else reportsRelease[l] = false;
                            workMs[l][round] = Double.parseDouble(m.group(1)) + releaseMs[l][round];
                        }
                    }
                }
            }
            Command javaVersion = new Command("java -version", median(javaTimes), List.copyOf(javaTimes));
            List<Launcher> out = new ArrayList<>();
            for (int l = 0; l < n; l++) {
                List<Command> cs = new ArrayList<>();
                for (int c = 0; c < NAMES.size(); c++) {
                    List<Double> runs =
                            java.util.Arrays.stream(times[l][c]).boxed().toList();
                    cs.add(new Command(NAMES.get(c), BenchSupport.median(times[l][c]), runs));
                }
                double w = BenchSupport.median(workMs[l]);
                double overhead = cs.get(2).medianMs() - w;
                Double release = reportsRelease[l] ? BenchSupport.median(releaseMs[l]) : null;
                out.add(new Launcher(
                        o.launchers().get(l).toString(), cs, w, release, overhead, overhead / javaVersion.medianMs()));
            }
            return new Report(o.guestBytes(), o.dataBytes(), o.runs(), javaVersion, out);
        } finally {
            OutputFile.removeScratch(work);
        }
    }

    private record Timed(double ms, String out) {}

    private static Timed time(List<String> command, Path dir) throws IOException {
        Path out = dir.resolve("out.txt");
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(command)
                .redirectOutput(out.toFile())
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start();
        try {
            if (!p.waitFor(120, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
                throw new IOException(String.join(" ", command) + ": did not finish in 120 s");
            }
        } catch (InterruptedException e) {
            p.destroyForcibly();
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        if (p.exitValue() != 0) throw new IOException(String.join(" ", command) + ": exit status " + p.exitValue());
        return new Timed(ms, Files.readString(out, StandardCharsets.UTF_8));
    }

    private static double median(List<Double> v) {
        double[] a = v.stream().mapToDouble(Double::doubleValue).toArray();
        return BenchSupport.median(a);
    }
}
