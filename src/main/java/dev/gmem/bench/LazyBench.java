package dev.gmem.bench;

import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.LazyRestore;
import dev.gmem.restore.RandomReaders;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * Lazy restore on this host, in one run, each figure against its target:
 * <ul>
 *   <li>time to ready (the fault handler accepts faults) for a small and a large sparse guest,
 *       from a warm JVM, median of {@code repeat} starts; opening the snapshot is reported apart;
 *   <li>fault service of 4 KiB pages from a warm dense snapshot, no prefetch and no fault-around,
 *       one reader touching pages in random order: the handler's service time (event read to
 *       wake) and the reader's access time;
 *   <li>background population: prefetch alone into a dense guest, GiB/s of data;
 *   <li>random concurrent access while the prefetch runs: {@code runs} runs, wrong bytes counted.
 * </ul>
 * Each for the userfaultfd modes given.
 */
public final class LazyBench {
    private LazyBench() {}

    public record Options(
            long denseSize,
            long smallSparse,
            long largeSparse,
            List<dev.gmem.fault.UffdMode> modes,
            int repeat,
            int runs,
            long warmBytes,
            Path dir) {}

    public record Ready(String mode, long guestBytes, double openMs, double readyMs) {}

    public record Faults(String mode, long faults, dev.gmem.fault.Latency service, dev.gmem.fault.Latency access) {}

    public record Prefetch(String mode, long dataBytes, double medianMs, double gibPerS) {}

    public record Stress(String mode, int runs, long pagesRead, long wrongPages, long faults, long racesLost) {}

    public record Report(List<Ready> ready, List<Faults> faults, List<Prefetch> prefetch, List<Stress> stress) {}

    public static Report run(Options o, Consumer<String> progress) throws IOException {
        Files.createDirectories(o.dir());
        int cpus = Runtime.getRuntime().availableProcessors();
        Path work = dev.gmem.util.OutputFile.scratchDirectory(
                o.dir(), "gmem-bench-lazy-"); // its own: two runs at once never share a file
        Path dense = work.resolve("gmem-lazy-dense.snap");
        Path small = work.resolve("gmem-lazy-sparse-small.snap");
        Path large = work.resolve("gmem-lazy-sparse-large.snap");
        Path raw = work.resolve("gmem-lazy.mem");
        try {
            progress.accept("synthesizing and packing the images");
            image(raw, dense, o.denseSize(), new ImageSynth.Mix(0, 0, 0), cpus);
            ImageSynth.Mix sparse = new ImageSynth.Mix(0.9, 0.05, 0);
            image(raw, small, o.smallSparse(), sparse, cpus);
            image(raw, large, o.largeSparse(), sparse, cpus);
            long warm = BenchSupport.warmBytes(o.warmBytes());
            if (warm > 0) {
                progress.accept("warming up " + (warm >> 20) + " MiB of memory");
                BenchSupport.warmMemory(warm);
            }
            List<Ready> ready = readyTimes(o, List.of(small, large), progress);
            List<Faults> faults = new ArrayList<>();
            List<Prefetch> prefetch = new ArrayList<>();
            List<Stress> stress = new ArrayList<>();
            for (dev.gmem.fault.UffdMode mode : o.modes()) {
                progress.accept("fault service, " + mode.label());
                try (Snapshot s = Snapshot.open(dense)) {
                    s.verify(cpus, x -> {}); // warm the snapshot's pages
                    LazyRestore.Options noPrefetch =
                            new LazyRestore.Options(mode, dev.gmem.fault.OnRemove.ZERO, false, 0, 4096, 4096);
                    for (int round = 0; round < 2; round++) { // the first round warms the JIT
                        try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                                LazyRestore lazy = LazyRestore.start(s, d.memory(), noPrefetch)) {
                            RandomReaders.Result r = RandomReaders.check(lazy.memory(), s, 4096, 1, round);
                            if (r.wrongPages() != 0)
                                throw new IOException("fault service run read " + r.wrongPages() + " wrong pages");
                            LazyRestore.Stats st = lazy.stats();
                            if (round == 1)
                                faults.add(new Faults(mode.label(), st.faults(), st.latency(), r.accessLatency()));
                        }
                        BenchSupport.settle();
                    }
                    progress.accept("background population, " + mode.label());
                    double[] ms = new double[o.repeat()];
                    long bytes = 0;
                    for (int round = -1; round < o.repeat(); round++) {
                        try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                                LazyRestore lazy =
                                        LazyRestore.start(s, d.memory(), LazyRestore.Options.defaults(mode))) {
                            if (!lazy.awaitPopulated(600_000)) throw new IOException("prefetch did not finish");
                            LazyRestore.Stats st = lazy.stats();
                            bytes = st.prefetchBytes();
                            if (round >= 0) ms[round] = bytes / (1024.0 * 1024 * 1024) / st.prefetchGibPerS() * 1000;
                        }
                        BenchSupport.settle();
                    }
                    double med = BenchSupport.median(ms);
                    prefetch.add(new Prefetch(
                            mode.label(),
                            bytes,
                            BenchSupport.round(med),
                            BenchSupport.round(BenchSupport.gibPerS(bytes, med))));
                    long read = 0, wrong = 0, fs = 0, lost = 0;
                    for (int run = 0; run < o.runs(); run++) {
                        progress.accept("random access during prefetch, " + mode.label() + ", run " + (run + 1) + "/"
                                + o.runs());
                        try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                                LazyRestore lazy =
                                        LazyRestore.start(s, d.memory(), LazyRestore.Options.defaults(mode))) {
                            RandomReaders.Result r = RandomReaders.check(lazy.memory(), s, 4096, 2, run);
                            lazy.awaitPopulated(600_000);
                            read += r.pages();
                            wrong += r.wrongPages();
                            fs += lazy.stats().faults();
                            lost += lazy.stats().racesLost();
                        }
                    }
                    stress.add(new Stress(mode.label(), o.runs(), read, wrong, fs, lost));
                }
            }
            return new Report(ready, faults, prefetch, stress);
        } finally {
            dev.gmem.util.OutputFile.removeScratch(work);
        }
    }

    /**
     * Time to ready for every mode and snapshot, interleaved round by round (ten warm-up rounds
     * first: the figure is for a warm JVM, as in a VMM), medians of the timed rounds.
     */
    private static List<Ready> readyTimes(Options o, List<Path> snaps, Consumer<String> progress) throws IOException {
        int configs = o.modes().size() * snaps.size();
        double[][] open = new double[configs][o.repeat()];
        double[][] readyMs = new double[configs][o.repeat()];
        long[] size = new long[configs];
        progress.accept("time to ready, every mode and size in turn");
        for (int round = -10; round < o.repeat(); round++) {
            int k = 0;
            for (dev.gmem.fault.UffdMode mode : o.modes()) {
                for (Path snap : snaps) {
                    long t0 = System.nanoTime();
                    try (Snapshot s = Snapshot.open(snap)) {
                        double openMs = (System.nanoTime() - t0) / 1e6;
                        size[k] = s.size();
                        try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                                LazyRestore lazy = LazyRestore.start(
                                        s,
                                        d.memory(),
                                        LazyRestore.Options.defaults(mode).withPrefetch(false))) {
                            if (round >= 0) {
                                open[k][round] = openMs;
                                readyMs[k][round] = lazy.stats().readyMs();
                            }
                        }
                    }
                    k++;
                }
            }
        }
        List<Ready> ready = new ArrayList<>();
        int k = 0;
        for (dev.gmem.fault.UffdMode mode : o.modes()) {
            for (int i = 0; i < snaps.size(); i++, k++) {
                ready.add(new Ready(
                        mode.label(),
                        size[k],
                        BenchSupport.round(BenchSupport.median(open[k])),
                        BenchSupport.round(BenchSupport.median(readyMs[k]))));
            }
        }
        return ready;
    }

    private static void image(Path raw, Path snap, long size, ImageSynth.Mix mix, int threads) throws IOException {
        ImageSynth.generate(raw, size, mix, size, threads, b -> {});
        try (RawImage image = RawImage.open(raw, null, threads, b -> {})) {
            SnapshotWriter.pack(image, snap, Codec.NONE, new long[0], b -> {});
        }
        Files.delete(raw);
    }
}
