package dev.gmem.bench;

import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * Snapshot pack and eager restore, side by side in one run. Three snapshots, packed uncompressed
 * from synthetic images: a dense one of {@code size} (every page data), and a dense and a sparse
 * one of {@code proportionSize} (the sparse one holds {@code sparseData} data, the rest zero pages
 * and holes). Rounds interleave, after an untimed warm-up round: pack the small dense image again,
 * then restore each snapshot into fresh guest memory on each backend. A restore is timed end to
 * end: open and validate the snapshot, create the guest memory file, check every checksum,
 * populate. Each restore is checked page by page outside the timing. The page cache is warm.
 */
public final class RestoreBench {

    private RestoreBench() {}

    public record Options(
            long size,
            long proportionSize,
            double sparseData,
            List<GuestMemory.Backend> backends,
            int repeat,
            long warmBytes,
            Path dir) {}

    /** One configuration's medians; {@code gibPerS} counts data bytes over the median time. */
    public record Result(
            String what,
            String backend,
            String strategy,
            long guestBytes,
            long dataBytes,
            double medianMs,
            double minMs,
            double maxMs,
            double checksumMs,
            double populateMs,
            double gibPerS) {}

    /** {@code sparseVsDense}: per backend, the sparse restore's median time over the dense one's of the same size. */
    public record Report(
            String dir,
            long sizeBytes,
            long proportionSizeBytes,
            double sparseDataFraction,
            int repeat,
            List<Result> results,
            Map<String, Double> sparseVsDense) {}

    private record Image(String name, Path raw, Path snap, long size) {}

    public static Report run(Options o, Consumer<String> progress) throws IOException {
        Files.createDirectories(o.dir());
        Path work = dev.gmem.util.OutputFile.scratchDirectory(
                o.dir(), "gmem-bench-restore-"); // its own: two runs at once never share a file
        int cpus = Runtime.getRuntime().availableProcessors();
        Image small = image(work, "dense", o.size());
        Image dense = image(work, "dense", o.proportionSize());
        Image sparse = image(work, "sparse", o.proportionSize());
        Path packOut = work.resolve("gmem-bench-pack.snap");
        List<Image> restores = o.size() == o.proportionSize() ? List.of(small, sparse) : List.of(small, dense, sparse);
        List<Path> files = new ArrayList<>(List.of(packOut));
        for (Image i : restores) files.addAll(List.of(i.raw(), i.snap()));
        try {
            for (Image i : restores) {
                progress.accept("synthesizing and packing " + i.name() + " " + (i.size() >> 20) + " MiB");
                double zero = Math.min(0.2, 1 - o.sparseData());
                ImageSynth.Mix mix = i.name().equals("dense")
                        ? new ImageSynth.Mix(0, 0, 0)
                        : new ImageSynth.Mix(1 - o.sparseData() - zero, zero, 0);
                ImageSynth.generate(i.raw(), i.size(), mix, i.size(), cpus, b -> {});
                pack(i.raw(), i.snap());
                if (i != small) Files.delete(i.raw()); // only the small dense image is packed again
            }
            long warm = BenchSupport.warmBytes(o.warmBytes());
            if (warm > 0) {
                progress.accept("warming up " + (warm >> 20)
                        + " MiB of memory (first touch of never-used RAM is slow on virtual machines)");
                BenchSupport.warmMemory(warm);
            }
            Map<String, double[][]> times = new LinkedHashMap<>(); // key -> [round] {total, checksum, populate}
            Map<String, Result> shape = new LinkedHashMap<>();
            int steps = (1 + restores.size() * o.backends().size()) * (o.repeat() + 1);
            int step = 0;
            for (int round = -1; round < o.repeat(); round++) {
                String tag = round < 0 ? "warm-up " : "";
                progress.accept("[" + (++step) + "/" + steps + "] " + tag + "pack " + (small.size() >> 20) + " MiB");
                double t = pack(small.raw(), packOut);
                Files.delete(packOut);
                record(times, "pack", round, o.repeat(), new double[] {t, 0, 0});
                shape.putIfAbsent(
                        "pack", new Result("pack", null, "none", small.size(), small.size(), 0, 0, 0, 0, 0, 0));
                BenchSupport.settle();
                for (GuestMemory.Backend b : o.backends()) {
                    for (Image i : restores) {
                        String what = "restore " + i.name();
                        String key = what + " " + (i.size() >> 20) + "|" + b.label();
                        progress.accept("[" + (++step) + "/" + steps + "] " + tag + what + " " + (i.size() >> 20)
                                + " MiB, " + b.label());
                        long t0 = System.nanoTime();
                        try (Snapshot s = Snapshot.open(i.snap());
                                Destination d = Destination.anonymous(b, s.size())) {
                            EagerRestore.Report r =
                                    EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), x -> {});
                            double ms = (System.nanoTime() - t0) / 1e6;
                            EagerRestore.verifyContents(s, d.memory(), cpus);
                            record(times, key, round, o.repeat(), new double[] {ms, r.checksumMs(), r.populateMs()});
                            shape.putIfAbsent(
                                    key,
                                    new Result(
                                            what,
                                            b.label(),
                                            r.strategy() + " x" + r.threads(),
                                            r.guestBytes(),
                                            r.bytesRestored(),
                                            0,
                                            0,
                                            0,
                                            0,
                                            0,
                                            0));
                        }
                        BenchSupport.settle();
                    }
                }
            }
            List<Result> results = new ArrayList<>();
            times.forEach((key, runs) -> {
                Result s = shape.get(key);
                double[] total = column(runs, 0);
                double med = BenchSupport.median(total);
                results.add(new Result(
                        s.what(),
                        s.backend(),
                        s.strategy(),
                        s.guestBytes(),
                        s.dataBytes(),
                        BenchSupport.round(med),
                        BenchSupport.round(BenchSupport.min(total)),
                        BenchSupport.round(BenchSupport.max(total)),
                        BenchSupport.round(BenchSupport.median(column(runs, 1))),
                        BenchSupport.round(BenchSupport.median(column(runs, 2))),
                        BenchSupport.round(BenchSupport.gibPerS(s.dataBytes(), med))));
            });
            Map<String, Double> ratio = new LinkedHashMap<>();
            for (GuestMemory.Backend b : o.backends()) {
                double d = BenchSupport.median(
                        column(times.get("restore dense " + (o.proportionSize() >> 20) + "|" + b.label()), 0));
                double s = BenchSupport.median(
                        column(times.get("restore sparse " + (o.proportionSize() >> 20) + "|" + b.label()), 0));
                ratio.put(b.label(), BenchSupport.round(s / d));
            }
            return new Report(
                    o.dir().toString(), o.size(), o.proportionSize(), o.sparseData(), o.repeat(), results, ratio);
        } finally {
            for (Path p : files) Files.deleteIfExists(p);
            dev.gmem.util.OutputFile.removeScratch(work);
        }
    }

    private static Image image(Path dir, String name, long size) {
        String base = "gmem-bench-" + name + "-" + (size >> 20) + "m";
        return new Image(name, dir.resolve(base + ".mem"), dir.resolve(base + ".snap"), size);
    }

    private static double[] column(double[][] runs, int c) {
        double[] out = new double[runs.length];
        for (int i = 0; i < runs.length; i++) out[i] = runs[i][c];
        return out;
    }

    private static void record(Map<String, double[][]> times, String key, int round, int repeat, double[] values) {
        if (round < 0) return;
        times.computeIfAbsent(key, k -> new double[repeat][])[round] = values;
    }

    private static double pack(Path raw, Path out) throws IOException {
        long t0 = System.nanoTime();
        try (RawImage image = RawImage.open(raw, null, Runtime.getRuntime().availableProcessors(), b -> {})) {
            SnapshotWriter.pack(image, out, Codec.NONE, new long[0], b -> {});
        }
        return (System.nanoTime() - t0) / 1e6;
    }
}
