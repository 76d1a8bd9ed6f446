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
 * Snapshot pack and eager restore, side by side in one run: a dense image (every page data) and a
 * sparse one (a tenth data, the rest zero pages and holes), packed uncompressed, then restored
 * into fresh guest memory on each backend, rounds interleaved, page cache warm. A restore is timed
 * end to end: open and validate the snapshot, create the guest memory file, check every checksum,
 * populate. Every restore is checked page by page outside the timing.
 */
public final class RestoreBench {
    private static final double GIB = 1024.0 * 1024 * 1024;

    private RestoreBench() {}

    public record Options(long size, long sparseSize, double sparseData, List<GuestMemory.Backend> backends, int repeat, long warmBytes, Path dir) {}

    public record Result(String what, String backend, double medianMs, double minMs, double maxMs, long guestBytes, long dataBytes, double gibPerS) {}

    /** {@code sparseVsDense}: the sparse restore's median time over the dense one's, per backend. */
    public record Report(long sizeBytes, long sparseSizeBytes, double sparseDataFraction, int repeat, List<Result> results,
            Map<String, Double> sparseVsDense, Map<String, String> strategy) {}

    public static Report run(Options o, Consumer<String> progress) throws IOException {
        Files.createDirectories(o.dir());
        Path dense = o.dir().resolve("gmem-bench-dense.mem");
        Path sparse = o.dir().resolve("gmem-bench-sparse.mem");
        Path denseSnap = o.dir().resolve("gmem-bench-dense.snap");
        Path sparseSnap = o.dir().resolve("gmem-bench-sparse.snap");
        Path packOut = o.dir().resolve("gmem-bench-pack.snap");
        int threads = Runtime.getRuntime().availableProcessors();
        try {
            progress.accept("synthesizing a dense " + (o.size() >> 20) + " MiB image and a sparse " + (o.sparseSize() >> 20) + " MiB one");
            ImageSynth.generate(dense, o.size(), new ImageSynth.Mix(0, 0, 0), 1, threads, b -> {});
            double zero = Math.min(0.2, 1 - o.sparseData());
            ImageSynth.generate(sparse, o.sparseSize(), new ImageSynth.Mix(1 - o.sparseData() - zero, zero, 0), 2, threads, b -> {});
            pack(dense, denseSnap);
            pack(sparse, sparseSnap);
            long warm = BenchSupport.warmBytes(o.warmBytes());
            if (warm > 0) {
                progress.accept("warming up " + (warm >> 20) + " MiB of memory (first touch of never-used RAM is slow on virtual machines)");
                BenchSupport.warmMemory(warm);
            }
            Map<String, double[]> times = new LinkedHashMap<>();
            Map<String, long[]> bytes = new LinkedHashMap<>();
            Map<String, String> strategy = new LinkedHashMap<>();
            int steps = (1 + 2 * o.backends().size()) * (o.repeat() + 1);
            int step = 0;
            for (int round = -1; round < o.repeat(); round++) {
                String tag = round < 0 ? "warm-up " : "";
                progress.accept("[" + (++step) + "/" + steps + "] " + tag + "pack");
                double t = pack(dense, packOut);
                record(times, bytes, "pack|", round, o.repeat(), t, o.size(), o.size());
                BenchSupport.settle();
                for (GuestMemory.Backend b : o.backends()) {
                    for (Path snap : List.of(denseSnap, sparseSnap)) {
                        String what = snap == denseSnap ? "restore dense" : "restore sparse";
                        progress.accept("[" + (++step) + "/" + steps + "] " + tag + what + " " + b.label());
                        Timed r = restore(snap, b);
                        strategy.put(b.label(), r.strategy() + " x" + r.threads());
                        record(times, bytes, what + "|" + b.label(), round, o.repeat(), r.elapsedMsEndToEnd, r.report.guestBytes(), r.report.bytesRestored());
                        BenchSupport.settle();
                    }
                }
            }
            List<Result> results = new ArrayList<>();
            times.forEach((key, t) -> {
                String[] k = key.split("\\|", -1);
                long[] gb = bytes.get(key);
                double med = BenchSupport.median(t);
                results.add(new Result(k[0], k[1].isEmpty() ? null : k[1], BenchSupport.round(med), BenchSupport.round(BenchSupport.min(t)),
                        BenchSupport.round(BenchSupport.max(t)), gb[0], gb[1], BenchSupport.round(gb[1] / GIB / (med / 1000))));
            });
            Map<String, Double> ratio = new LinkedHashMap<>();
            for (GuestMemory.Backend b : o.backends()) {
                ratio.put(b.label(), BenchSupport.round(BenchSupport.median(times.get("restore sparse|" + b.label())) / BenchSupport.median(times.get("restore dense|" + b.label()))));
            }
            return new Report(o.size(), o.sparseSize(), o.sparseData(), o.repeat(), results, ratio, strategy);
        } finally {
            for (Path p : List.of(dense, sparse, denseSnap, sparseSnap, packOut)) Files.deleteIfExists(p);
        }
    }

    private static void record(Map<String, double[]> times, Map<String, long[]> bytes, String key, int round, int repeat, double ms, long guest, long data) {
        if (round < 0) return;
        times.computeIfAbsent(key, k -> new double[repeat])[round] = ms;
        bytes.put(key, new long[] {guest, data});
    }

    private static double pack(Path raw, Path out) throws IOException {
        long t0 = System.nanoTime();
        try (RawImage image = RawImage.open(raw, null, Runtime.getRuntime().availableProcessors(), b -> {})) {
            SnapshotWriter.pack(image, out, Codec.NONE, new long[0], b -> {});
        }
        return (System.nanoTime() - t0) / 1e6;
    }

    private record Timed(EagerRestore.Report report, double elapsedMsEndToEnd) {
        String strategy() {
            return report.strategy();
        }

        int threads() {
            return report.threads();
        }
    }

    private static Timed restore(Path snap, GuestMemory.Backend backend) throws IOException {
        long t0 = System.nanoTime();
        try (Snapshot s = Snapshot.open(snap); Destination d = Destination.anonymous(backend, s.size())) {
            EagerRestore.Report r = EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), b -> {});
            double ms = (System.nanoTime() - t0) / 1e6;
            EagerRestore.verifyContents(s, d.memory(), Runtime.getRuntime().availableProcessors());
            return new Timed(r, ms);
        }
    }

}
