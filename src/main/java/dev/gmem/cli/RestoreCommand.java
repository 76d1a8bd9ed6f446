package dev.gmem.cli;

import dev.gmem.fault.FaultEngine;
import dev.gmem.fault.OnRemove;
import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.GuestVerdict;
import dev.gmem.restore.LazyRestore;
import dev.gmem.restore.RandomReaders;
import dev.gmem.restore.Strategy;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(
        name = "restore",
        header = "Restore a snapshot or a raw memory file into new guest memory, eagerly or lazily.",
        mixinStandardHelpOptions = true,
        description = {
            "Restore a gmem snapshot or a raw VMM memory file into a new guest memory file, eagerly: every data page in",
            "place before it returns. Checksums are checked first, so a corrupt snapshot writes nothing. The population",
            "strategy is chosen for this host (see 'gmem bench populate'); zero pages and holes cost nothing.",
            "",
            "With --mode lazy, guest memory is usable at once: faults are served from the snapshot through userfaultfd",
            "(decoding only the chunk needed) while a background thread populates the rest, in the snapshot's recorded",
            "access order first, then by address, skipping zero pages. --verify then reads, in random order from two",
            "threads (eight for a tcp:// or s3:// source, to overlap its round trips) while the prefetch runs, every data",
            "page, every resident zero page or hole, and a sample of 4096 absent ones (all of them in a smaller guest),",
            "and checks every byte: holes are never faulted in wholesale.",
            "",
            "The guest memory is released when the command ends unless --export names a file for a VMM to map."
        })
final class RestoreCommand implements Callable<Integer> {
    @Parameters(
            index = "0",
            paramLabel = "SNAPSHOT|RAW|tcp://HOST:PORT|s3://BUCKET/PREFIX/NAME",
            description = "A gmem snapshot, or a raw memory file (detected by content), or the memory a 'gmem serve' on"
                    + " another host serves (post-copy: lazily, its pages pushed and faults fetched over the network).")
    String inputArgument;

    /** --reconnect-timeout, --peer-timeout and TLS, for a tcp:// source. */
    @CommandLine.Mixin
    PostcopyOptions.Destination remote;

    /** --endpoint and the chunk cache, for an s3:// source. */
    @CommandLine.Mixin
    StoreOptions store;

    /** The source: a local file, or a page server's memory. */
    private PageSource open(Progress line, boolean scanProgress) throws java.io.IOException {
        java.util.function.Consumer<String> log = l -> {
            spec.commandLine().getErr().println(spec.qualifiedName() + ": " + l);
            spec.commandLine().getErr().flush();
        };
        PageSource r = remote.connect(spec, inputArgument, log);
        if (r != null) {
            if (regions != null || !format.equals("auto")) {
                r.close();
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--regions and --format describe a local file, not a tcp:// source");
            }
            return r;
        }
        if (dev.gmem.store.S3Location.isS3(inputArgument))
            return store.openSource(spec.commandLine(), inputArgument, p -> null);
        Path input = Path.of(inputArgument);
        return PageSources.open(
                input,
                SnapshotCommand.regions(spec.commandLine(), regions),
                SnapshotCommand.threads(),
                scanProgress ? new ByteProgress(line, "scan", SnapshotCommand.inputSize(input)) : x -> {},
                SnapshotCommand.format(spec.commandLine(), format));
    }

    @Option(
            names = "--backend",
            defaultValue = "memfd",
            description = "kernel (a KVM guest_memfd) or memfd (default ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--regions", description = SnapshotCommand.REGIONS_HELP)
    String regions;

    @Option(names = "--format", defaultValue = "auto", description = SnapshotCommand.FORMAT_HELP)
    String format;

    @Option(
            names = "--strategy",
            description =
                    "Force a population strategy (mapped-copy, populate-copy, write, thp-copy) instead of the chosen one.")
    String strategy;

    @Option(names = "--threads", description = "Threads for a forced strategy (default 1).")
    int threads;

    @Option(names = "--verify", description = "Afterwards, check every page of guest memory against the source.")
    boolean verify;

    @Option(
            names = "--export",
            paramLabel = "PATH",
            description =
                    "Restore into a new file at PATH (on tmpfs, such as /dev/shm) that a VMM maps, as QEMU's"
                            + " memory-backend-file does; it appears under PATH only once the restore succeeded. memfd backend only.")
    Path export;

    @Option(
            names = "--mode",
            defaultValue = "eager",
            description = "eager (every page before returning) or lazy (usable at once; faults served"
                    + " through userfaultfd while a background thread populates the rest). Default ${DEFAULT-VALUE}.")
    String mode;

    @Option(
            names = "--uffd-mode",
            defaultValue = "missing",
            description = "Lazy restore: missing (UFFDIO_COPY) or minor (write() into the file, then"
                    + " UFFDIO_CONTINUE: the kernel work's flow). Default ${DEFAULT-VALUE}.")
    String uffdMode;

    @Option(
            names = "--on-remove",
            defaultValue = "zero",
            description = "Lazy restore: what a range the guest discards (MADV_REMOVE) reads as afterwards:"
                    + " zero or refetch (from the snapshot). Default ${DEFAULT-VALUE}.")
    String onRemove;

    @Option(
            names = "--check-guest",
            description =
                    "Prove the restore with a real KVM vCPU that reads one word per page and reports a checksum, compared"
                            + " with the source's: after an eager restore, or during a lazy one (the vCPU's own faults are then served by the fault engine).")
    boolean checkGuest;

    @Option(
            names = "--check-stride",
            defaultValue = "1",
            description = "The vCPU reads one page in this many (default ${DEFAULT-VALUE}).")
    long checkStride;

    /** --metrics, --metrics-any-address. */
    @CommandLine.Mixin
    MetricsEndpoint metricsEndpoint;

    @Option(
            names = "--metrics-hold",
            paramLabel = "SECONDS",
            defaultValue = "0",
            description =
                    "Keep serving the final metrics this many seconds after the restore (default ${DEFAULT-VALUE}), for a scraper.")
    int metricsHold;

    @Option(
            names = "--trace",
            paramLabel = "FILE",
            description =
                    "Lazy restore: record what happened over time (pages in place by path every millisecond, the ready and"
                            + " fully resident moments, fault latencies) into FILE; 'gmem report FILE -o restore.svg' draws it.")
    Path trace;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (inputArgument.isEmpty())
            throw new CommandLine.ParameterException(
                    spec.commandLine(),
                    "Invalid value for positional parameter at index 0 (SNAPSHOT|RAW|tcp://HOST:PORT): an empty path"
                            + " names no file");
        GuestMemory.Backend b = switch (backend.toLowerCase(Locale.ROOT)) {
            case "kernel" -> GuestMemory.Backend.KERNEL;
            case "memfd" -> GuestMemory.Backend.MEMFD;
            default ->
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--backend must be kernel or memfd, not '" + backend + "'");
        };
        if (export != null && b != GuestMemory.Backend.MEMFD) {
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--export needs the memfd backend: a KVM guest_memfd has no path to export");
        }
        Strategy forced = null;
        if (strategy != null) {
            try {
                forced = Strategy.parse(strategy);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
            }
        }
        Options.within(spec.commandLine(), "--threads", threads, 0, 256, ""); // 0: the strategy's own
        if (mode.equalsIgnoreCase("lazy")) return lazy(b);
        if (!mode.equalsIgnoreCase("eager"))
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--mode must be eager or lazy, not '" + mode + "'");
        if (checkStride < 1)
            throw new CommandLine.ParameterException(spec.commandLine(), "--check-stride must be at least 1");
        if (metricsEndpoint.given() || metricsHold != 0)
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--metrics applies to lazy restore (an eager one is over before a scrape)");
        if (trace != null)
            throw new CommandLine.ParameterException(spec.commandLine(), "--trace applies to lazy restore");
        EagerRestore.Outcome outcome;
        long restored;
        try (Progress line = new Progress(json.on);
                PageSource source = open(line, true);
                Destination dst =
                        export == null ? Destination.anonymous(b, source) : Destination.export(export, source.size())) {
            outcome = EagerRestore.run(
                    source,
                    dst,
                    new EagerRestore.Options(forced, threads, verify),
                    checkGuest ? checkStride : 0,
                    GUEST_TIMEOUT,
                    new ByteProgress(line, "restore", source.counts().dataBytes()),
                    line);
            restored = System.nanoTime();
        }
        // closing the guest memory and the source hands their pages back: the kernel's work, which a
        // restore into memory that nothing keeps pays in full (about 30 ms for 120 MiB here)
        double releaseMs = (System.nanoTime() - restored) / 1e6;
        EagerRestore.Report report = outcome.report();
        GuestVerdict guest = outcome.guestCheck();
        PrintWriter out = spec.commandLine().getOut();
        if (json.on) {
            out.println(Json.write(new Summary(report, releaseMs, export == null ? null : export.toString(), guest)));
        } else {
            print(out, report);
            if (guest != null) out.println("  " + guest.line());
            if (export != null && (guest == null || !guest.failed())) out.printf("exported to %s%n", export);
        }
        out.flush();
        return guest != null && guest.failed() ? 1 : 0;
    }

    private Integer lazy(GuestMemory.Backend b) throws Exception {
        if (export != null || strategy != null)
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--export and --strategy apply to eager restore");
        if (checkStride < 1)
            throw new CommandLine.ParameterException(spec.commandLine(), "--check-stride must be at least 1");
        UffdMode um;
        OnRemove or;
        try {
            um = UffdMode.parse(uffdMode);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--uffd-mode: " + e.getMessage());
        }
        try {
            or = OnRemove.parse(onRemove);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--on-remove: " + e.getMessage());
        }
        LazyRestore.Options options = new LazyRestore.Options(
                um, or, true, 3, FaultEngine.Prefetch.DEFAULT.minBatch(), FaultEngine.Prefetch.DEFAULT.maxBatch());
        LazyRestore.Checks checks = new LazyRestore.Checks(
                verify ? 2 : 0, System.nanoTime(), checkGuest ? checkStride : 0, GUEST_TIMEOUT, POPULATE_TIMEOUT);
        LazyRun r;
        dev.gmem.metrics.Metrics metrics = new dev.gmem.metrics.Metrics();
        try (dev.gmem.metrics.MetricsServer metricsServer = startMetrics(metrics);
                Progress line = new Progress(json.on)) {
            line.accept("lazy restore of " + inputArgument + " (" + um.label() + " mode)");
            long t0 = System.nanoTime();
            try (PageSource source = open(line, false)) {
                double openMs = (System.nanoTime() - t0) / 1e6;
                r = new LazyRun(
                        openMs,
                        LazyRestore.run(
                                source,
                                b,
                                options,
                                checks,
                                new LazyRestore.Observers(metricsServer == null ? null : metrics, trace)));
            }
            holdMetrics(metricsServer);
        }
        LazyRestore.Outcome o = r.restore();
        PrintWriter out = spec.commandLine().getOut();
        if (json.on) {
            out.println(Json.write(r));
        } else {
            LazyRestore.Stats s = o.stats();
            out.printf(
                    Locale.ROOT,
                    "lazy restore of %s (%s) into %s guest memory, userfaultfd %s mode: %s, %s of data%n",
                    o.source(),
                    o.format(),
                    o.backend(),
                    s.mode(),
                    Sizes.format(o.guestBytes()),
                    Sizes.format(o.dataBytes()));
            out.printf(
                    Locale.ROOT,
                    "  open and validate %.2f ms; ready for faults after %.2f ms more; fully populated after %.1f ms%n",
                    r.openMs(),
                    s.readyMs(),
                    s.populatedMs() == null ? Double.NaN : s.populatedMs());
            out.printf(
                    Locale.ROOT,
                    "  pages: %d by faults, %d by the prefetcher (%.2f GiB/s), %d zero pages and holes by faults (the rest never touched)%n",
                    s.faultPages(),
                    s.prefetchPages(),
                    s.prefetchGibPerS() == null ? 0.0 : s.prefetchGibPerS(),
                    s.zeroPages());
            out.printf(
                    Locale.ROOT,
                    "  faults: %d served (%d CONTINUE), p50 %.1f us, p90 %.1f us, p99 %.1f us, max %.1f us; %.2f ms blocked in all; %d races lost to"
                            + " the prefetcher%n",
                    s.faults(),
                    s.continues(),
                    s.latency().p50Us(),
                    s.latency().p90Us(),
                    s.latency().p99Us(),
                    s.latency().maxUs(),
                    s.blockedMs(),
                    s.racesLost());
            if (o.verify() != null) {
                RandomReaders.Result v = o.verify();
                out.printf(
                        Locale.ROOT,
                        "  verified while prefetching: %d pages (%d data, %d resident zero or hole, %d sampled absent) read in random order by %d"
                                + " threads, %d wrong; reads p50 %.1f us, p99 %.1f us%n",
                        v.pages(),
                        v.dataPages(),
                        v.residentOtherPages(),
                        v.sampledPages(),
                        o.readers(),
                        v.wrongPages(),
                        v.accessLatency().p50Us(),
                        v.accessLatency().p99Us());
            }
            if (o.guestCheck() != null) out.println("  " + o.guestCheck().line());
        }
        out.flush();
        return o.guestCheck() != null && o.guestCheck().failed() ? 1 : 0;
    }

    /** The JSON of a lazy restore: the time to open and validate the source, then the restore's outcome. */
    record LazyRun(double openMs, LazyRestore.Outcome restore) implements Json.Inlining {
        @Override
        public java.util.Set<String> inlined() {
            return java.util.Set.of("restore");
        }
    }

    /** The JSON of an eager restore: its report, then the time to release its memory and source. */
    record Summary(EagerRestore.Report restore, double releaseMs, String export, GuestVerdict guestCheck)
            implements Json.Inlining {
        @Override
        public java.util.Set<String> inlined() {
            return java.util.Set.of("restore");
        }
    }

    static final java.time.Duration GUEST_TIMEOUT = java.time.Duration.ofMinutes(10);
    static final java.time.Duration POPULATE_TIMEOUT = java.time.Duration.ofMinutes(10);

    static void print(PrintWriter out, EagerRestore.Report r) {
        out.printf(
                Locale.ROOT,
                "restored %s (%s) into %s guest memory: %s, %s of data%n",
                r.source(),
                r.format(),
                r.backend(),
                Sizes.format(r.guestBytes()),
                Sizes.format(r.bytesRestored()));
        out.printf(
                Locale.ROOT,
                "  pages: %d data, %d zero, %d hole (zero pages and holes are not copied)%n",
                r.pages().data(),
                r.pages().zero(),
                r.pages().hole());
        out.printf(
                Locale.ROOT,
                "  strategy: %s on %d thread%s: %s%n",
                r.strategy(),
                r.threads(),
                r.threads() == 1 ? "" : "s",
                r.reason());
        out.printf(
                Locale.ROOT,
                "  checksums %.1f ms, population %.1f ms, total %.1f ms: %.2f GiB/s of data%n",
                r.checksumMs(),
                r.populateMs(),
                r.elapsedMs(),
                r.gibPerS());
        if (r.verified() != null)
            out.printf(Locale.ROOT, "  verified: every page matches the source (%.1f ms)%n", r.verifyMs());
    }

    /** The metrics endpoint asked for with --metrics, started and announced on stderr; null when none was asked for. */
    private dev.gmem.metrics.MetricsServer startMetrics(dev.gmem.metrics.Metrics metrics) throws java.io.IOException {
        if (metricsEndpoint.address == null) {
            if (metricsEndpoint.anyAddress || metricsHold != 0)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--metrics-any-address and --metrics-hold need --metrics");
            return null;
        }
        Options.within(spec.commandLine(), "--metrics-hold", metricsHold, 0, 3600, "seconds");
        return metricsEndpoint.start(spec, metrics);
    }

    private void holdMetrics(dev.gmem.metrics.MetricsServer server) throws InterruptedException {
        if (server != null && metricsHold > 0) Thread.sleep(metricsHold * 1000L);
    }
}
