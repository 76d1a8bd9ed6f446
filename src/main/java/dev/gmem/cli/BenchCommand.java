package dev.gmem.cli;

import dev.gmem.bench.PopulationBench;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Strategy;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "bench",
        header = "Measure gmem on this host, as medians of interleaved runs.",
        mixinStandardHelpOptions = true,
        description = "Measure gmem on this host. Figures are medians of interleaved runs, compared within one run.",
        subcommands = {
            BenchCommand.Populate.class,
            BenchCommand.Restore.class,
            BenchCommand.Lazy.class,
            BenchCommand.Start.class,
            BenchCommand.FcHandler.class,
            BenchCommand.Postcopy.class,
            BenchCommand.Qemu.class,
            BenchCommand.StoreBench.class
        })
final class BenchCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(
            name = "populate",
            header = "Compare the population strategies, filling guest memory from one warm buffer.",
            mixinStandardHelpOptions = true,
            description = {
                "Fill guest memory from one warm source buffer with each population strategy and compare them.",
                "Every run gets a fresh guest memory file; an untimed warm-up round comes first; strategies are",
                "interleaved across repeats; every run's bytes are checked against the source outside the timing.",
                "",
                "Strategies:",
                "  mapped-copy    mmap, then copy: one page fault per page (the baseline of each backend)",
                "  populate-copy  mmap, MADV_POPULATE_WRITE in bulk, then copy",
                "  write          write() into the file, populate-once, no page faults",
                "  thp-copy       MADV_HUGEPAGE, populate, copy (where shmem THP is enabled)",
                "",
                "vs_baseline is the baseline's median over this median: higher is faster."
            })
    static final class Populate implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "512M",
                converter = Sizes.class,
                description =
                        "Bytes to populate per run (default ${DEFAULT-VALUE}; 3G gives the kernel work's second figure).")
        long size;

        @Option(
                names = "--backend",
                defaultValue = "all",
                description = "kernel, memfd or all (default ${DEFAULT-VALUE}).")
        String backend;

        @Option(
                names = "--strategy",
                split = ",",
                description = "Only these strategies (comma-separated); the baseline always runs.")
        List<String> strategies = new ArrayList<>();

        @Option(names = "--threads", split = ",", description = "Thread counts to try (default: 1 and the CPU count).")
        List<Integer> threads = new ArrayList<>();

        @Option(
                names = "--repeat",
                defaultValue = "5",
                description = "Timed runs per configuration (default ${DEFAULT-VALUE}).")
        int repeat;

        @Option(
                names = "--no-c-reference",
                negatable = true,
                defaultValue = "true",
                description =
                        "Also time the bundled C pwrite loop into a memfd (built with cc), side by side (default: on).")
        boolean cReference;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            List<GuestMemory.Backend> backends = backends(spec, backend);
            List<Strategy> chosen = new ArrayList<>();
            for (String s : strategies) {
                try {
                    chosen.add(Strategy.parse(s));
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
                }
            }
            if (size % dev.gmem.linux.Posix.pageSize() != 0 || size <= 0) {
                throw new CommandLine.ParameterException(
                        spec.commandLine(),
                        "--size must be a positive multiple of the page size (" + dev.gmem.linux.Posix.pageSize()
                                + ")");
            }
            if (repeat < 1) throw new CommandLine.ParameterException(spec.commandLine(), "--repeat must be at least 1");
            for (int t : threads) {
                if (t < 1 || t > 256)
                    throw new CommandLine.ParameterException(spec.commandLine(), "--threads must be between 1 and 256");
            }
            PopulationBench.Report report;
            try (Progress progress = new Progress(json.on)) {
                report = PopulationBench.run(
                        new PopulationBench.Options(size, backends, chosen, threads, repeat, cReference, warm.bytes()),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(report));
            } else {
                print(out, report);
            }
            out.flush();
            return 0;
        }

        private static void print(PrintWriter out, PopulationBench.Report r) {
            out.printf(
                    "populate %s, %d timed runs each (median, min, max), one warm-up round, strategies interleaved%n%n",
                    Sizes.format(r.sizeBytes()), r.repeat());
            out.printf(
                    "%-8s %-14s %7s %10s %10s %10s %8s %12s%n",
                    "backend", "strategy", "threads", "median ms", "min ms", "max ms", "GiB/s", "vs baseline");
            for (PopulationBench.Result x : r.results()) {
                out.printf(
                        Locale.ROOT,
                        "%-8s %-14s %7d %10.1f %10.1f %10.1f %8.2f %11.2fx%n",
                        x.backend(),
                        x.strategy(),
                        x.threads(),
                        x.medianMs(),
                        x.minMs(),
                        x.maxMs(),
                        x.gibPerS(),
                        x.vsBaseline());
            }
            out.println();
            r.chosen()
                    .forEach((backend, c) -> out.printf(
                            "chosen for %s: %s on %d thread%s: %s%n",
                            backend, c.strategy(), c.threads(), c.threads() == 1 ? "" : "s", c.reason()));
            for (PopulationBench.Skipped s : r.skipped())
                out.printf("skipped %s %s: %s%n", s.backend(), s.strategy(), s.reason());
        }
    }

    @Command(
            name = "restore",
            header = "Time snapshot pack and eager restore, side by side.",
            mixinStandardHelpOptions = true,
            description = {
                "Snapshot pack and eager restore, side by side. Three snapshots are packed uncompressed from synthetic images",
                "in --dir: a dense one of --size (every page data), and a dense and a sparse one of --proportion-size (the",
                "sparse one holds --sparse-data data, the rest zero pages and holes). Then, in interleaved rounds after an",
                "untimed warm-up round: pack the --size image again, and restore each snapshot into fresh guest memory on each",
                "backend. A restore is timed end to end (open and validate, create the file, every checksum, population);",
                "each is checked page by page outside the timing. The page cache is warm.",
                "",
                "Targets: dense restore >= 2.5 GiB/s; the sparse restore in <= 15%% of the dense one's time; pack >= 1.5 GiB/s."
            })
    static final class Restore implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "512M",
                converter = Sizes.class,
                description = "The dense image for speed (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--proportion-size",
                defaultValue = "4G",
                converter = Sizes.class,
                description = "The dense and sparse pair whose times are compared (default ${DEFAULT-VALUE}).")
        long proportionSize;

        @Option(
                names = "--sparse-data",
                defaultValue = "10%",
                converter = Percent.class,
                description = "Data share of the sparse image (default ${DEFAULT-VALUE}).")
        double sparseData;

        @Option(
                names = "--backend",
                defaultValue = "all",
                description = "kernel, memfd or all (default ${DEFAULT-VALUE}).")
        String backend;

        @Option(names = "--repeat", defaultValue = "5", description = "Timed rounds (default ${DEFAULT-VALUE}).")
        int repeat;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            List<GuestMemory.Backend> backends = backends(spec, backend);
            for (long s : new long[] {size, proportionSize}) {
                if (s <= 0 || s % (1 << 20) != 0)
                    throw new CommandLine.ParameterException(
                            spec.commandLine(), "--size and --proportion-size must be positive multiples of 1 MiB");
            }
            if (repeat < 1) throw new CommandLine.ParameterException(spec.commandLine(), "--repeat must be at least 1");
            java.nio.file.Path where = dir.resolve();
            dev.gmem.bench.RestoreBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.RestoreBench.run(
                        new dev.gmem.bench.RestoreBench.Options(
                                size, proportionSize, sparseData, backends, repeat, warm.bytes(), where),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
            } else {
                out.printf(
                        Locale.ROOT,
                        "snapshot pack and eager restore in %s: %d timed rounds (median, min, max), interleaved; sparse images hold %.0f%% data%n%n",
                        r.dir(),
                        r.repeat(),
                        r.sparseDataFraction() * 100);
                out.printf(
                        "%-15s %-7s %-16s %9s %10s %10s %9s %9s %9s %9s %7s%n",
                        "what",
                        "backend",
                        "strategy",
                        "guest",
                        "data",
                        "median ms",
                        "min ms",
                        "max ms",
                        "crc ms",
                        "fill ms",
                        "GiB/s");
                for (dev.gmem.bench.RestoreBench.Result x : r.results()) {
                    out.printf(
                            Locale.ROOT,
                            "%-15s %-7s %-16s %9s %10s %10.1f %9.1f %9.1f %9.1f %9.1f %7.2f%n",
                            x.what(),
                            x.backend() == null ? "-" : x.backend(),
                            x.strategy(),
                            Sizes.format(x.guestBytes()),
                            Sizes.format(x.dataBytes()),
                            x.medianMs(),
                            x.minMs(),
                            x.maxMs(),
                            x.checksumMs(),
                            x.populateMs(),
                            x.gibPerS());
                }
                out.println();
                r.sparseVsDense()
                        .forEach((b, v) -> out.printf(
                                Locale.ROOT,
                                "%s: the sparse %s restore takes %.1f%% of the dense one's time (target <= 15%%)%n",
                                b,
                                Sizes.format(r.proportionSizeBytes()),
                                v * 100));
                out.println("GiB/s counts data bytes (pack: the guest bytes read; the dense images are all data).");
            }
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "lazy",
            header = "Measure lazy restore against its targets, in each userfaultfd mode.",
            mixinStandardHelpOptions = true,
            description = {
                "Lazy restore on this host, each figure against its target, for each userfaultfd mode:",
                "  time to ready   a small and a large sparse guest (5%% data), warm JVM, median of --repeat starts (target <= 2 ms, alike)",
                "  fault service   4 KiB pages from a warm dense snapshot, no prefetch, one reader in random order (target p50 <= 15 us, p99 <= 60 us)",
                "  prefetch        background population alone into a dense guest (target >= 2 GiB/s of data)",
                "  random access   two readers check every byte while the prefetch runs, --runs times (target: zero wrong bytes)"
            })
    static final class Lazy implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "512M",
                converter = Sizes.class,
                description = "The dense guest (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--small",
                defaultValue = "1G",
                converter = Sizes.class,
                description = "The small sparse guest (default ${DEFAULT-VALUE}).")
        long small;

        @Option(
                names = "--large",
                defaultValue = "16G",
                converter = Sizes.class,
                description = "The large sparse guest (default ${DEFAULT-VALUE}).")
        long large;

        @Option(
                names = "--uffd-mode",
                defaultValue = "missing,minor",
                split = ",",
                description = "Modes to measure (default ${DEFAULT-VALUE}).")
        List<String> modes;

        @Option(
                names = "--repeat",
                defaultValue = "7",
                description = "Rounds for the medians (default ${DEFAULT-VALUE}).")
        int repeat;

        @Option(names = "--runs", defaultValue = "10", description = "Random-access runs (default ${DEFAULT-VALUE}).")
        int runs;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            List<dev.gmem.fault.UffdMode> ms = new ArrayList<>();
            for (String m : modes) {
                try {
                    ms.add(dev.gmem.fault.UffdMode.parse(m));
                } catch (IllegalArgumentException e) {
                    throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
                }
            }
            for (long s : new long[] {size, small, large}) {
                if (s <= 0 || s % (1 << 20) != 0)
                    throw new CommandLine.ParameterException(
                            spec.commandLine(), "sizes must be positive multiples of 1 MiB");
            }
            if (repeat < 1 || runs < 1)
                throw new CommandLine.ParameterException(spec.commandLine(), "--repeat and --runs must be at least 1");
            dev.gmem.probe.HostReport.Userfaultfd u =
                    dev.gmem.probe.HostProbe.host().userfaultfd();
            if (!u.available())
                throw new dev.gmem.memory.UnsupportedFeatureException("memfd", "lazy restore", u.reason());
            java.nio.file.Path where = dir.resolve();
            dev.gmem.bench.LazyBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.LazyBench.run(
                        new dev.gmem.bench.LazyBench.Options(size, small, large, ms, repeat, runs, warm.bytes(), where),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.println("time to ready (open is reported apart; target: ready <= 2 ms, the same for both sizes)");
            for (var x : r.ready())
                out.printf(
                        Locale.ROOT,
                        "  %-7s %10s guest: open %.3f ms, ready %.3f ms%n",
                        x.mode(),
                        Sizes.format(x.guestBytes()),
                        x.openMs(),
                        x.readyMs());
            out.println("fault service, 4 KiB pages, warm snapshot (target: p50 <= 15 us, p99 <= 60 us)");
            for (var x : r.faults()) {
                out.printf(
                        Locale.ROOT,
                        "  %-7s %d faults; handler p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us; reader's access p50 %.1f us, p99 %.1f us%n",
                        x.mode(),
                        x.faults(),
                        x.service().p50Us(),
                        x.service().p90Us(),
                        x.service().p99Us(),
                        x.service().maxUs(),
                        x.access().p50Us(),
                        x.access().p99Us());
            }
            out.println("background population alone (target >= 2 GiB/s of data)");
            for (var x : r.prefetch())
                out.printf(
                        Locale.ROOT,
                        "  %-7s %s in %.1f ms: %.2f GiB/s%n",
                        x.mode(),
                        Sizes.format(x.dataBytes()),
                        x.medianMs(),
                        x.gibPerS());
            out.println("random access during prefetch (target: zero wrong bytes)");
            for (var x : r.stress())
                out.printf(
                        Locale.ROOT,
                        "  %-7s %d runs, %d pages read, %d wrong; %d faults, %d races lost to the prefetcher%n",
                        x.mode(),
                        x.runs(),
                        x.pagesRead(),
                        x.wrongPages(),
                        x.faults(),
                        x.racesLost());
            out.flush();
            return r.stress().stream().anyMatch(x -> x.wrongPages() > 0) ? 1 : 0;
        }
    }

    /** {@code dir} if given, else /dev/shm (a tmpfs: files there measure gmem, not disk writeback), else the temporary directory. */
    static java.nio.file.Path workDir(java.nio.file.Path dir) {
        java.nio.file.Path shm = java.nio.file.Path.of("/dev/shm");
        return dir != null
                ? dir
                : java.nio.file.Files.isDirectory(shm)
                        ? shm
                        : java.nio.file.Path.of(System.getProperty("java.io.tmpdir"));
    }

    static List<GuestMemory.Backend> backends(CommandLine.Model.CommandSpec spec, String backend) {
        return switch (backend.toLowerCase(Locale.ROOT)) {
            case "all" -> List.of(GuestMemory.Backend.KERNEL, GuestMemory.Backend.MEMFD);
            case "kernel" -> List.of(GuestMemory.Backend.KERNEL);
            case "memfd" -> List.of(GuestMemory.Backend.MEMFD);
            default ->
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--backend must be kernel, memfd or all, not '" + backend + "'");
        };
    }

    @Command(
            name = "start",
            header = "Measure how long gmem takes from process start to exit, cold.",
            mixinStandardHelpOptions = true,
            description = {
                "Run gmem --version, gmem probe and an eager restore of a sparse guest through the launcher, each in a new",
                "process, interleaved round by round with a bare java -version of the same JDK; after one untimed round,",
                "report the median wall times. For the restore, the wall time beyond gmem's own reported work (the restore",
                "and the release of its memory) is set against java -version (target: restore <= 250 ms on a quiet machine,",
                "overhead <= 4x java -version)."
            })
    static final class Start implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "1G",
                converter = Sizes.class,
                description = "The guest (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--data",
                defaultValue = "120M",
                converter = Sizes.class,
                description = "Its data (default ${DEFAULT-VALUE}).")
        long data;

        @Option(names = "--runs", defaultValue = "5", description = "Timed rounds (default ${DEFAULT-VALUE}).")
        int runs;

        @Option(
                names = "--launcher",
                description =
                        "A gmem launcher to time; repeat it to compare builds side by side (default: the one beside this build).")
        List<java.nio.file.Path> launchers;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (runs < 1) throw new CommandLine.ParameterException(spec.commandLine(), "--runs must be at least 1");
            if (size <= 0 || size % 4096 != 0 || data <= 0 || data > size / 2)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--size must be a positive multiple of 4096 and --data at most half of it");
            List<java.nio.file.Path> l =
                    launchers != null && !launchers.isEmpty() ? launchers : List.of(besideThisBuild());
            dev.gmem.bench.StartBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.StartBench.run(
                        new dev.gmem.bench.StartBench.Options(l, size, data, runs, dir.resolve()), progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.printf(
                    Locale.ROOT,
                    "cold start to exit, median of %d interleaved rounds; java -version %.0f ms%n",
                    r.runs(),
                    r.javaVersion().medianMs());
            for (var x : r.launchers()) {
                out.println("  " + x.launcher());
                for (var c : x.commands()) out.printf(Locale.ROOT, "    %-22s %7.0f ms%n", c.name(), c.medianMs());
                out.printf(
                        Locale.ROOT,
                        "    restore: %.0f ms of reported work (%s), %.0f ms beyond it = %.1fx java -version (target <= 4x); wall %.0f ms (target <= 250 ms)%n",
                        x.restoreWorkMs(),
                        x.releaseMs() == null
                                ? "a build that does not report the release of its memory"
                                : String.format(Locale.ROOT, "%.0f ms of it releasing the memory", x.releaseMs()),
                        x.overheadMs(),
                        x.overheadRatio(),
                        x.commands().get(2).medianMs());
            }
            out.flush();
            return 0;
        }

        /** target/gmem.jar's launcher: the gmem script two levels up. */
        static java.nio.file.Path besideThisBuild() throws java.io.IOException {
            try {
                java.nio.file.Path jar = java.nio.file.Path.of(Start.class
                        .getProtectionDomain()
                        .getCodeSource()
                        .getLocation()
                        .toURI());
                java.nio.file.Path root =
                        jar.getParent() == null ? null : jar.getParent().getParent();
                if (root != null && java.nio.file.Files.isExecutable(root.resolve("gmem"))) return root.resolve("gmem");
            } catch (java.net.URISyntaxException | SecurityException e) {
                // no code source: say so below
            }
            throw new java.io.IOException("cannot find the gmem launcher beside this build; name it with --launcher");
        }
    }

    @Command(
            name = "fc-handler",
            header = "Compare gmem fc-handler with a C reference handler, serving a VMM in another process.",
            mixinStandardHelpOptions = true,
            description = {
                "Run gmem fc-handler and a C reference handler (one page per fault, as Firecracker's on-demand example)",
                "as daemons, each serving the same test VMM, a separate process that plays Firecracker and compares its",
                "memory with the memory file at its end (a wrong page fails the benchmark). In one run:",
                "  fault latency   one thread touching every page in a random order, no prefetch, the handlers",
                "                  interleaved round by round after 3 untimed rounds (a daemon's steady state); a touch",
                "                  of a page not yet in place is a fault, timed as the faulting thread sees it. With the",
                "                  VMM on the handlers' CPU, and on another one (where waking it dominates).",
                "  prefetch        a VMM that touches nothing, filled by gmem's prefetch until it graduates (GiB/s).",
                "  many VMs        N VMMs at once from one snapshot, the handler's resident memory sampled throughout.",
                "Targets: gmem's p50 <= 1.1x and p99 <= 1.3x the reference's; prefetch >= 2 GiB/s; RSS growing by less",
                "than 64 MiB from the fewest VMs to the most."
            })
    static final class FcHandler implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "256M",
                converter = Sizes.class,
                description = "Each VM's memory (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--repeat",
                defaultValue = "5",
                description = "Rounds for the medians (default ${DEFAULT-VALUE}).")
        int repeat;

        @Option(
                names = "--vms",
                defaultValue = "1,4,8",
                split = ",",
                description = "Numbers of VMs at once (default ${DEFAULT-VALUE}).")
        List<Integer> vms;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (size <= 0 || size % (1 << 20) != 0)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--size must be a positive multiple of 1 MiB");
            Options.within(spec.commandLine(), "--repeat", repeat, 1, 1000, "");
            if (vms.isEmpty() || vms.stream().anyMatch(n -> n < 1 || n > 64))
                throw new CommandLine.ParameterException(spec.commandLine(), "--vms must be between 1 and 64 each");
            if (!dev.gmem.probe.HostProbe.userfaultfdOfHost().available())
                throw new dev.gmem.memory.UnsupportedFeatureException(
                        "memfd",
                        "a page-fault handler",
                        dev.gmem.probe.HostProbe.userfaultfdOfHost().reason());
            dev.gmem.bench.FcHandlerBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.FcHandlerBench.run(
                        new dev.gmem.bench.FcHandlerBench.Options(
                                size, repeat, List.copyOf(vms), warm.bytes(), dir.resolve()),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.printf(
                    Locale.ROOT,
                    "fault latency seen by the faulting thread, %s VM, 4 KiB pages, medians of %d rounds%n",
                    Sizes.format(r.guestBytes()),
                    repeat);
            out.println(
                    "  handler                      VMM on     faults    p50 us   p90 us   p99 us   max us  all touched ms");
            for (var x : r.latency())
                out.printf(
                        Locale.ROOT,
                        "  %-28s %-9s %7d %9.1f %8.1f %8.1f %8.1f %15.1f%n",
                        x.handler(),
                        x.placement(),
                        x.faults(),
                        x.p50Us(),
                        x.p90Us(),
                        x.p99Us(),
                        x.maxUs(),
                        x.touchedMs());
            out.println("  against the C reference (target: p50 <= 1.1x, p99 <= 1.3x)");
            for (var x : r.ratios())
                out.printf(
                        Locale.ROOT,
                        "  %-28s %-9s p50 %.2fx, p99 %.2fx, all touched %.2fx%n",
                        x.handler(),
                        x.placement(),
                        x.p50(),
                        x.p99(),
                        x.touched());
            var p = r.prefetch();
            out.printf(
                    Locale.ROOT,
                    "prefetch into another process (target >= 2 GiB/s): %s in %.1f ms = %.2f GiB/s; graduated %.1f ms after the handshake%n",
                    Sizes.format(p.dataBytes()),
                    p.prefetchMs(),
                    p.gibPerS(),
                    p.graduatedMs());
            out.println("VMs at once from one snapshot, each touching every page (target: gmem's RSS grows < 64 MiB)");
            out.println("  handler       VMs   RSS idle   RSS peak   touched ms: median    max   graduated");
            for (var x : r.fleet())
                out.printf(
                        Locale.ROOT,
                        "  %-12s %4d %10s %10s %20.1f %8.1f %6d%n",
                        x.handler(),
                        x.vms(),
                        Sizes.format(x.rssIdleBytes()),
                        Sizes.format(x.rssPeakBytes()),
                        x.touchedMsMedian(),
                        x.touchedMsMax(),
                        x.graduated());
            out.println("wrong pages seen by the VMMs: " + r.wrongPages());
            for (String n : r.notes()) out.println("note: " + n);
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "postcopy",
            header =
                    "Post-copy over loopback and a delaying proxy: fault round trips, push throughput, time to resident.",
            mixinStandardHelpOptions = true,
            description = {
                "A page server and a lazy restore fed from it, in this process, on a synthetic guest of half data:",
                "  fault round trips  one thread touching data pages in a random order (through C), idle and while the",
                "                     push runs (it yields to faults), over loopback and through a proxy adding 1 ms each way;",
                "                     beside them the local lazy restore's (the floor) and a 4 KiB echo on the same path;",
                "  push               every data page in place, plain and TLS 1.3, with and without LZ4 (medians of",
                "                     interleaved rounds, after one untimed round of each); in the same rounds the install",
                "                     floor: write() of as many bytes from memory into a fresh memfd, as each pushed page",
                "                     is written at the destination (no push beats it; it shows a host slow to allocate);",
                "  resident           the time until fully resident over loopback, and with 5 resets on the way.",
                "Targets: loopback round trip p50 <= 80 us and p99 <= 300 us under the push; push >= 1.5 GiB/s plain;",
                "TLS costing <= 30%% of that."
            })
    static final class Postcopy implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "1G",
                converter = Sizes.class,
                description = "The guest's memory, half of it data (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--rounds",
                defaultValue = "3",
                description = "Push rounds for the medians (default ${DEFAULT-VALUE}).")
        int rounds;

        @Option(
                names = "--touches",
                defaultValue = "20000",
                description = "Pages touched for the fault round trips (default ${DEFAULT-VALUE}).")
        int touches;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (size < (64 << 20) || size % (1 << 20) != 0)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--size must be a multiple of 1 MiB, at least 64M");
            Options.within(spec.commandLine(), "--rounds", rounds, 1, 100, "");
            Options.within(spec.commandLine(), "--touches", touches, 100, 10_000_000, "");
            if (!dev.gmem.probe.HostProbe.userfaultfdOfHost().available())
                throw new dev.gmem.memory.UnsupportedFeatureException(
                        "memfd",
                        "a lazy restore",
                        dev.gmem.probe.HostProbe.userfaultfdOfHost().reason());
            dev.gmem.bench.PostcopyBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.PostcopyBench.run(
                        new dev.gmem.bench.PostcopyBench.Options(size, rounds, touches, warm.bytes(), dir.resolve()),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.printf(
                    Locale.ROOT,
                    "post-copy of a %s guest, %s of data, in one process (server and destination share the 2 cores)%n",
                    Sizes.format(r.guestBytes()),
                    Sizes.format(r.dataBytes()));
            out.println("fault round trip (request until in place), one thread touching data pages at random");
            out.println("  path                      load                     faults    p50 us    p99 us    max us");
            for (var x : r.latency())
                out.printf(
                        Locale.ROOT,
                        "  %-25s %-22s %8d %9.1f %9.1f %9.1f%n",
                        x.path(),
                        x.load(),
                        x.faults(),
                        x.p50Us(),
                        x.p99Us(),
                        x.maxUs());
            for (var e : r.echo())
                out.printf(
                        Locale.ROOT,
                        "  4 KiB echo, %-24s p50 %.1f us, p99 %.1f us%n",
                        e.path() + ":",
                        e.p50Us(),
                        e.p99Us());
            out.println("push until every data page is in place (medians; target plain >= 1.5 GiB/s, TLS <= 30% less)");
            for (var p : r.push())
                out.printf(
                        Locale.ROOT,
                        "  %-6s %-9s %6.2f GiB/s  %8.1f ms%n",
                        p.transport(),
                        p.lz4() ? "LZ4" : "no LZ4",
                        p.medianGibPerS(),
                        p.medianResidentMs());
            out.printf(Locale.ROOT, "  TLS costs %.0f%% of the plain push%n", r.tlsCost() * 100);
            out.printf(
                    Locale.ROOT,
                    "  install floor: write() of as many bytes from memory into a fresh memfd, one thread:"
                            + " %.2f GiB/s, %.1f ms;%n  the plain push runs at %.2fx that (no push can beat it)%n",
                    r.installFloor().medianGibPerS(),
                    r.installFloor().medianMs(),
                    r.push().get(0).medianGibPerS() / r.installFloor().medianGibPerS());
            out.println("fully resident");
            for (var x : r.resident())
                out.printf(
                        Locale.ROOT, "  %-40s %8.1f ms, %d reconnections%n", x.kind(), x.residentMs(), x.reconnects());
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "qemu",
            header =
                    "QEMU's own save and load against gmem qemu snapshot and restore, on a real Linux guest under TCG.",
            mixinStandardHelpOptions = true,
            description = {
                "Boots the test guest (Debian's cloud kernel, fetched by build/guest-kernel, and a busybox initramfs whose",
                "init fills RAM with random data and prints a counter every 10 ms) with its RAM in a shared tmpfs file, and",
                "in interleaved rounds measures: QEMU's own save to a file (bandwidth cap raised) against the gmem qemu",
                "snapshot command, plain and zstd (save time, bytes on disk); QEMU's own load of that file into a new tmpfs",
                "file against the gmem qemu restore command, each from its start until the guest's next counter line,",
                "and the RAM allocated once the guest runs. gmem runs through its launcher, as a user runs it.",
                "Targets: restore <= 0.6x QEMU's own load; RAM allocated <= 1.1x the guest's data; the snapshot no larger",
                "than QEMU's stream, <= 0.5x with compression."
            })
    static final class Qemu implements Callable<Integer> {
        @Option(
                names = "--ram",
                defaultValue = "1024",
                paramLabel = "MIB",
                description = "Guest RAM in MiB (default ${DEFAULT-VALUE}).")
        int ramMiB;

        @Option(
                names = "--data",
                defaultValue = "32",
                paramLabel = "MIB",
                description =
                        "Random data the guest keeps in RAM, in MiB, besides its kernel's and programs' (default ${DEFAULT-VALUE}).")
        int dataMiB;

        @Option(
                names = "--rounds",
                defaultValue = "3",
                description = "Rounds for the medians (default ${DEFAULT-VALUE}).")
        int rounds;

        @Option(
                names = "--launcher",
                paramLabel = "PATH",
                description = "The gmem launcher to time (default: the one beside this build).")
        java.nio.file.Path launcher;

        @Option(
                names = "--compare",
                paramLabel = "LAUNCHER",
                description =
                        "Another build's gmem launcher whose qemu restore of the same snapshot runs in every round"
                                + " too: two builds side by side in one run.")
        java.nio.file.Path compare;

        @CommandLine.Mixin
        Options.Warm warm;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            Options.within(spec.commandLine(), "--ram", ramMiB, 128, 16384, "MiB");
            if (dataMiB < 1 || dataMiB > ramMiB / 2)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--data must be between 1 MiB and half the RAM");
            Options.within(spec.commandLine(), "--rounds", rounds, 1, 20, "");
            if (compare != null && !java.nio.file.Files.isExecutable(compare))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--compare: " + compare + " is not an executable gmem launcher");
            dev.gmem.bench.QemuBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.QemuBench.run(
                        new dev.gmem.bench.QemuBench.Options(
                                ramMiB,
                                dataMiB,
                                rounds,
                                warm.bytes(),
                                dir.resolve(),
                                launcher != null ? launcher : Start.besideThisBuild(),
                                compare),
                        progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.printf(
                    Locale.ROOT,
                    "QEMU %s, TCG; a %s guest with %s of data pages; medians of %d interleaved rounds%n",
                    r.qemu(),
                    Sizes.format(r.ramBytes()),
                    Sizes.format(r.guestDataBytes()),
                    rounds);
            out.println("save                                                       time ms    on disk");
            for (var x : r.saves())
                out.printf(Locale.ROOT, "  %-55s %8.0f %10s%n", x.way(), x.medianMs(), Sizes.format(x.fileBytes()));
            out.println("restore, to the guest's next counter line                  time ms    RAM allocated");
            for (var x : r.loads())
                out.printf(
                        Locale.ROOT,
                        "  %-55s %8.0f %10s%n",
                        x.way(),
                        x.medianToNextLineMs(),
                        Sizes.format(x.ramAllocatedBytes()));
            out.printf(
                    Locale.ROOT,
                    "gmem restore / QEMU's own load: %.2fx (target <= 0.6); RAM allocated / guest data: %.2fx (target <= 1.1);"
                            + " snapshot / QEMU's stream: %.2fx (target <= 1), %.2fx with zstd (target <= 0.5)%n",
                    r.loadRatio(),
                    r.allocatedOverData(),
                    r.sizeRatio(),
                    r.compressedSizeRatio());
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "store",
            header =
                    "Snapshots in S3 against a real S3 server on loopback: push, dedup, pull, cold lazy restore, chunk reads.",
            mixinStandardHelpOptions = true,
            description = {
                "Starts S3Proxy (its own process, filesystem back end) and, in one run: pushes a synthetic guest and a",
                "re-snapshot of it with 5%% of its data pages changed (against the first as its base); pulls the first with",
                "the store's reader against a plain parallel download of the same objects with the same client and threads",
                "(the server's limit), for both HTTP clients; reads one page of random chunks uncached and from the cache;",
                "and restores the re-snapshot lazily from a cold cache: time to ready and the prefetch until resident.",
                "Targets: pull >= 80%% of the plain download; cold lazy restore ready <= 50 ms; the re-snapshot uploads",
                "<= 10%% of its data."
            })
    static final class StoreBench implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "512M",
                converter = Sizes.class,
                description = "The guest (default ${DEFAULT-VALUE}).")
        long size;

        @Option(names = "--threads", defaultValue = "8", description = "Requests in flight (default ${DEFAULT-VALUE}).")
        int threads;

        @CommandLine.Mixin
        Options.WorkDir dir;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (size < (16 << 20) || size % (1 << 20) != 0)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--size must be a multiple of 1 MiB, at least 16M");
            Options.within(spec.commandLine(), "--threads", threads, 1, 64, "");
            dev.gmem.bench.StoreBench.Report r;
            try (Progress progress = new Progress(json.on)) {
                r = dev.gmem.bench.StoreBench.run(
                        new dev.gmem.bench.StoreBench.Options(size, threads, dir.resolve()), progress);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
                out.flush();
                return 0;
            }
            out.printf(
                    Locale.ROOT,
                    "a %s guest, %s of data; S3Proxy on loopback; %d requests in flight%n",
                    Sizes.format(r.guestBytes()),
                    Sizes.format(r.dataBytes()),
                    threads);
            out.printf(
                    Locale.ROOT,
                    "push: %.2f GiB/s of data; the 5%%-changed re-snapshot %.2f GiB/s, uploading %.1f%% of its data (%d pages from the base)%n",
                    r.pushGibPerS(),
                    r.rePushGibPerS(),
                    r.reUploadedFraction() * 100,
                    r.rePagesFromBase());
            for (var p : r.pulls())
                out.printf(
                        Locale.ROOT,
                        "pull (%s client): %.2f GiB/s stored, plain parallel GETs %.2f GiB/s: %.0f%%%n",
                        p.httpClient(),
                        p.storeGibPerS(),
                        p.plainGibPerS(),
                        p.ratio() * 100);
            out.printf(
                    Locale.ROOT,
                    "cold lazy restore: ready in %.1f ms (the manifest %.1f ms)%n",
                    r.coldReadyMs(),
                    r.coldManifestMs());
            for (var l : r.latency())
                out.printf(
                        Locale.ROOT,
                        "chunk read %-48s p50 %8.0f us, p99 %8.0f us (%d reads)%n",
                        l.path() + ":",
                        l.p50Us(),
                        l.p99Us(),
                        l.samples());
            out.println("object size  a fault's GET p50 / max  GETs in flight  requests for this guest's data");
            for (var z : r.objectSizes())
                out.printf(
                        Locale.ROOT,
                        "%8s     %7.0f / %7.0f us     %6.2f GiB/s  %d%n",
                        Sizes.format(z.bytes()),
                        z.faultP50Us(),
                        z.faultMaxUs(),
                        z.gibPerS(),
                        z.requestsForData());
            if (r.prefetchGibPerS() != null)
                out.printf(
                        Locale.ROOT,
                        "prefetch until resident: %.2f GiB/s, %.0f ms%n",
                        r.prefetchGibPerS(),
                        r.residentMs() == null ? Double.NaN : r.residentMs());
            out.flush();
            return 0;
        }
    }
}
