package dev.gmem.bench;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Mapping;
import dev.gmem.memory.GuestMemories;
import dev.gmem.memory.GuestMemory;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.restore.Populator;
import dev.gmem.restore.Strategy;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.function.Consumer;

/**
 * Measures population strategies side by side: the same source buffer, a fresh guest memory file
 * per run, configurations interleaved across repeats (each round starts one further along) so drift
 * hits all alike, one untimed warm-up round first, and every run's bytes verified outside the
 * timed region. The baseline of each backend is mapped-copy on one thread.
 */
public final class PopulationBench {
    /**
     * What to measure. Empty {@code strategies} means all; empty {@code threads} means 1 and the
     * CPU count. {@code warmBytes} of memory are touched once before anything is timed (negative:
     * 80% of the available memory), because on virtual machines the first touch of never-used RAM
     * costs several times a later one, and a benchmark cycles through most of the free memory.
     */
    public record Options(
            long size,
            List<GuestMemory.Backend> backends,
            List<Strategy> strategies,
            List<Integer> threads,
            int repeat,
            boolean cReference,
            long warmBytes) {}

    /** Pause after each run, so that freeing its memory (and a VM's teardown) ends before the next run starts. */
    public record Result(
            String backend,
            String strategy,
            int threads,
            double medianMs,
            double minMs,
            double maxMs,
            double gibPerS,
            double vsBaseline) {}

    public record Chosen(String strategy, int threads, String reason) {}

    public record Skipped(String backend, String strategy, String reason) {}

    public record Report(
            long sizeBytes, int repeat, List<Result> results, Map<String, Chosen> chosen, List<Skipped> skipped) {}

    private record Config(GuestMemory.Backend backend, Strategy strategy, int threads) {
        String label() {
            return backend.label() + " " + (strategy == null ? "c-pwrite" : strategy.label()) + " x" + threads;
        }
    }

    private static final long FLAGS = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);

    private PopulationBench() {}

    /** Runs the benchmark; {@code progress} hears a line before each run. */
    public static Report run(Options o, Consumer<String> progress) throws IOException {
        if (o.size() <= 0 || o.size() % dev.gmem.linux.Posix.pageSize() != 0)
            throw new IllegalArgumentException("size must be a positive multiple of the page size");
        if (o.repeat() < 1) throw new IllegalArgumentException("repeat must be at least 1");
        List<Skipped> skipped = new ArrayList<>();
        Map<String, Chosen> chosen = new LinkedHashMap<>();
        List<Config> configs = new ArrayList<>();
        int cpus = Runtime.getRuntime().availableProcessors();
        List<Integer> threadCounts = o.threads().isEmpty() ? (cpus > 1 ? List.of(1, cpus) : List.of(1)) : o.threads();
        for (GuestMemory.Backend backend : o.backends()) {
            if (backend == GuestMemory.Backend.KERNEL
                    && !HostProbe.host().guestMemfd().available()) {
                skipped.add(new Skipped(
                        backend.label(), "all", HostProbe.host().guestMemfd().reason()));
                continue;
            }
            try (GuestMemory probe = GuestMemories.create(backend, dev.gmem.linux.Posix.pageSize(), FLAGS)) {
                Populator.Plan plan = Populator.choose(probe);
                chosen.put(backend.label(), new Chosen(plan.strategy().label(), plan.threads(), plan.reason()));
                configs.add(new Config(backend, Strategy.MAPPED_COPY, 1));
                for (Strategy s : o.strategies().isEmpty() ? List.of(Strategy.values()) : o.strategies()) {
                    Check available = Populator.availability(s, probe);
                    if (!available.available()) {
                        skipped.add(new Skipped(backend.label(), s.label(), available.reason()));
                        continue;
                    }
                    for (int t : threadCounts) {
                        Config c = new Config(backend, s, t);
                        if (!configs.contains(c)) configs.add(c);
                    }
                }
            }
        }
        List<String> cWhyNot = new ArrayList<>();
        Optional<CReference> c = o.cReference() ? CReference.build(cWhyNot) : Optional.empty();
        cWhyNot.forEach(why -> skipped.add(new Skipped("memfd", "c-pwrite", why)));
        if (c.isPresent()) configs.add(new Config(GuestMemory.Backend.MEMFD, null, 1));

        Map<Config, double[]> times = new LinkedHashMap<>();
        for (Config cfg : configs) times.put(cfg, new double[o.repeat()]);
        long warm = BenchSupport.warmBytes(o.warmBytes());
        if (warm > 0) {
            progress.accept("warming up " + (warm >> 20)
                    + " MiB of memory (first touch of never-used RAM is slow on virtual machines)");
            BenchSupport.warmMemory(warm);
        }
        try (Mapping source = Mapping.anonymous(o.size())) {
            fill(source.segment());
            if (c.isPresent()) c.get().start(o.size());
            int total = configs.size() * (o.repeat() + 1);
            int done = 0;
            for (int round = -1; round < o.repeat(); round++) {
                for (int i = 0; i < configs.size(); i++) {
                    Config cfg = configs.get((i + Math.max(0, round)) % configs.size());
                    progress.accept("[" + (++done) + "/" + total + "] " + (round < 0 ? "warm-up " : "") + cfg.label());
                    double ms = cfg.strategy() == null ? c.orElseThrow().run() : measure(cfg, source.segment());
                    if (round >= 0) times.get(cfg)[round] = ms;
                    BenchSupport.settle();
                }
            }
        } finally {
            if (c.isPresent()) c.get().close();
        }
        List<Result> results = new ArrayList<>();
        for (Map.Entry<Config, double[]> e : times.entrySet()) {
            Config cfg = e.getKey();
            double[] t = e.getValue().clone();
            Arrays.sort(t);
            double median = BenchSupport.median(t);
            double baseMedian = BenchSupport.median(times.get(new Config(cfg.backend(), Strategy.MAPPED_COPY, 1)));
            results.add(new Result(
                    cfg.backend().label(),
                    cfg.strategy() == null ? "c-pwrite" : cfg.strategy().label(),
                    cfg.threads(),
                    BenchSupport.round(median),
                    BenchSupport.round(t[0]),
                    BenchSupport.round(t[t.length - 1]),
                    BenchSupport.round(BenchSupport.gibPerS(o.size(), median)),
                    BenchSupport.round(baseMedian / median)));
        }
        return new Report(o.size(), o.repeat(), results, chosen, skipped);
    }

    private static double measure(Config cfg, MemorySegment source) throws IOException {
        return timedPopulation(cfg.backend(), cfg.strategy(), cfg.threads(), source.byteSize(), source, cfg.label());
    }

    /**
     * One timed population of {@code source} at offset 0 of a fresh guest memory of {@code size} bytes, in
     * milliseconds; then an untimed check of every byte, whose failure names {@code label}.
     */
    static double timedPopulation(
            GuestMemory.Backend backend, Strategy strategy, int threads, long size, MemorySegment source, String label)
            throws IOException {
        try (GuestMemory memory = GuestMemories.create(backend, size, FLAGS)) {
            long start = System.nanoTime();
            Populator.populate(strategy, threads, memory, 0, source);
            long elapsed = System.nanoTime() - start;
            long mismatch = memory.guestView().asSlice(0, source.byteSize()).mismatch(source);
            if (mismatch != -1) {
                throw new IOException(label + ": populated memory differs from the source at offset " + mismatch);
            }
            return elapsed / 1e6;
        }
    }

    /** A deterministic source: every 8-byte word distinct, nothing zero, so a missed page cannot pass. */
    static void fill(MemorySegment s) {
        long words = s.byteSize() / 8;
        for (long i = 0; i < words; i++) s.setAtIndex(ValueLayout.JAVA_LONG, i, (i + 1) * 0x9E3779B97F4A7C15L);
    }
}
