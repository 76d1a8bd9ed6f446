package dev.gmem.restore;

import dev.gmem.fault.FaultEngine;
import dev.gmem.fault.FaultEngineFailedException;
import dev.gmem.fault.FaultStats;
import dev.gmem.fault.Latency;
import dev.gmem.fault.OnFailure;
import dev.gmem.fault.OnRemove;
import dev.gmem.fault.OwnedTarget;
import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.time.Duration;

/**
 * Lazy restore: guest memory usable at once, pages filled on demand through userfaultfd while a
 * background thread populates the rest. A composition of the fault engine: an {@link OwnedTarget}
 * over a guest memory file (mapped and registered here), a {@link SourcePages} provider (or a {@link ProvidedSource}'s own) over the
 * snapshot, and the engine's prefetcher; failures release the range ({@link OnFailure#RELEASE}),
 * so no thread hangs on a restore that cannot finish. See {@link FaultEngine} for how faults are
 * served and what holds when.
 *
 * <p>{@link #run} is the use case the command line and the demo call: restore, optionally prove
 * it with readers and a vCPU while it runs, wait until populated.
 */
public final class LazyRestore implements AutoCloseable {
    /**
     * @param faultAroundPages data pages after the faulting one that a fault also fills (0: the page alone)
     * @param minBatch the prefetch batch right after a fault, in bytes
     * @param maxBatch the largest prefetch batch, reached while the guest is quiet
     */
    public record Options(
            UffdMode mode, OnRemove onRemove, boolean prefetch, int faultAroundPages, long minBatch, long maxBatch) {
        public static Options defaults(UffdMode mode) {
            return new Options(
                    mode,
                    OnRemove.ZERO,
                    true,
                    3,
                    FaultEngine.Prefetch.DEFAULT.minBatch(),
                    FaultEngine.Prefetch.DEFAULT.maxBatch());
        }

        public Options withPrefetch(boolean on) {
            return new Options(mode, onRemove, on, faultAroundPages, minBatch, maxBatch);
        }

        FaultEngine.Options engine() {
            return new FaultEngine.Options(
                    onRemove,
                    faultAroundPages,
                    OnFailure.RELEASE,
                    prefetch ? new FaultEngine.Prefetch(minBatch, maxBatch) : null);
        }
    }

    /**
     * What happened so far: the engine's counters (see {@link FaultStats}) and times since the
     * start, in milliseconds: {@code readyMs} until faults were served, {@code populatedMs} until
     * every data page was in place (null before), and the prefetcher's rate.
     */
    public record Stats(
            String mode,
            long faults,
            long faultPages,
            long zeroPages,
            long continues,
            long prefetchPages,
            long prefetchBytes,
            long racesLost,
            long retries,
            long removes,
            Latency latency,
            double blockedMs,
            double readyMs,
            Double populatedMs,
            Double prefetchGibPerS,
            boolean complete,
            String failure) {}

    private final PageSource source;
    private final GuestMemory memory;
    private final dev.gmem.fault.PageProvider pages;
    private final OwnedTarget target;
    private final FaultEngine engine;
    private final UffdMode mode;
    private final long startNanos;
    private final long readyNanos;

    private LazyRestore(
            PageSource source,
            GuestMemory memory,
            dev.gmem.fault.PageProvider pages,
            OwnedTarget target,
            FaultEngine engine,
            UffdMode mode,
            long startNanos) {
        this.source = source;
        this.memory = memory;
        this.pages = pages;
        this.target = target;
        this.engine = engine;
        this.mode = mode;
        this.startNanos = startNanos;
        this.readyNanos = System.nanoTime();
    }

    /**
     * Registers {@code memory} (as large as {@code source}, created with MMAP and INIT_SHARED) with
     * userfaultfd and starts serving faults and prefetching. Guest memory is usable through
     * {@link #memory()} as soon as this returns.
     *
     * @throws SourceMismatchException if the source does not fit the memory or has another page size
     * @throws dev.gmem.memory.UnsupportedFeatureException where the backend cannot register userfaultfd on this host, with the reason
     */
    public static LazyRestore start(PageSource source, GuestMemory memory, Options options) throws IOException {
        long t0 = System.nanoTime();
        if (memory.size() < source.size()) {
            throw new SourceMismatchException(source.name() + ": " + source.size()
                    + " bytes of guest memory do not fit in a " + memory.size() + "-byte guest memory file");
        }
        for (Region r : source.regions()) {
            if (r.pageSize() != memory.pageSize()) {
                throw new SourceMismatchException(
                        source.name() + ": lazy restore serves " + memory.pageSize() + "-byte pages; region at guest 0x"
                                + Long.toHexString(r.guestAddress()) + " has " + r.pageSize() + "-byte pages");
            }
        }
        FaultEngine.Options engineOptions = options.engine();
        OwnedTarget target = OwnedTarget.register(memory, source.size(), options.mode());
        dev.gmem.fault.PageProvider pages =
                source instanceof ProvidedSource provided ? provided.provider() : new SourcePages(source);
        FaultEngine engine;
        try {
            engine = FaultEngine.start(target, pages, engineOptions);
        } catch (IOException | RuntimeException e) {
            target.close();
            throw e;
        }
        LazyRestore lazy = new LazyRestore(source, memory, pages, target, engine, options.mode(), t0);
        // checksums beside the prefetcher, once the restore is ready
        if (options.prefetch() && pages instanceof SourcePages local) local.verifyAhead();
        return lazy;
    }

    /**
     * Guest memory, registered: what the guest (or a VMM's memslot) uses. Accesses fault until
     * their page is in place. Threads of this JVM must touch it only from C (a KVM_RUN, or
     * {@link dev.gmem.linux.Posix#mismatch} and {@link dev.gmem.linux.Posix#copy}): a Java thread
     * blocked on a fault inside Java code holds up every safepoint, and with it the fault thread.
     */
    public MemorySegment memory() {
        return target.mapping().segment();
    }

    public HostMapping mapping() {
        return target.mapping();
    }

    public GuestMemory guestMemory() {
        return memory;
    }

    public FaultEngine engine() {
        return engine;
    }

    /**
     * Waits until every data page is in place (and the range unregistered), or {@code timeoutMillis}
     * pass. Returns false on time-out.
     *
     * @throws RestoreFailedException if the restore failed, with the cause (for example a {@link dev.gmem.snapshot.ChunkChecksumException})
     */
    public boolean awaitPopulated(long timeoutMillis) throws IOException {
        try {
            return engine.awaitPopulated(timeoutMillis);
        } catch (FaultEngineFailedException e) {
            throw failed(e);
        }
    }

    /** Throws the restore's failure, if it failed: for threads reading the memory, after each read. */
    public void checkHealthy() throws RestoreFailedException {
        FaultEngineFailedException e = engine.failure();
        if (e != null) throw failed(e);
    }

    private RestoreFailedException failed(FaultEngineFailedException e) {
        Throwable cause = e.getCause() == null ? e : e.getCause();
        try {
            source.checkUnchanged(); // a truncated source makes a COPY or write() from it fail with EFAULT: say why
        } catch (IOException changed) {
            changed.addSuppressed(cause);
            cause = changed;
        }
        return new RestoreFailedException("lazy restore of " + source.name() + " failed: " + cause.getMessage(), cause);
    }

    public Stats stats() {
        FaultStats.Counts c = engine.stats().counts();
        long page = memory.pageSize();
        long populated = engine.populatedNanos();
        long prefetchStart = engine.prefetchStartNanos();
        long bytes = c.prefetchPages() * page;
        Double gibs = populated > 0 && prefetchStart > 0 && populated > prefetchStart
                ? bytes / (1024.0 * 1024 * 1024) / ((populated - prefetchStart) / 1e9)
                : null;
        FaultEngineFailedException f = engine.failure();
        return new Stats(
                mode.label(),
                c.faults(),
                c.faultPages(),
                c.zeroPages(),
                c.continues(),
                c.prefetchPages(),
                bytes,
                c.racesLost(),
                c.retries(),
                c.removes(),
                c.latency(),
                c.blockedMs(),
                (readyNanos - startNanos) / 1e6,
                populated > 0 ? (populated - startNanos) / 1e6 : null,
                gibs,
                populated > 0 && f == null,
                f == null ? null : f.getMessage());
    }

    /**
     * Stops the engine and releases the registration and the mapping (see {@link FaultEngine#close}).
     * Threads still blocked on a fault then retry without userfaultfd, and a page not yet restored
     * reads as zeros: close the guest memory too unless {@link #awaitPopulated} returned true. Does
     * not close the source or the guest memory. Never throws.
     */
    @Override
    public void close() {
        engine.close();
        try {
            pages.close();
        } catch (IOException ignored) {
            // a provider that cannot stop cleanly has nothing left to serve: the engine is closed
        }
    }

    // ---- the use case ----

    /** How many times the readers {@link Checks} asks for check a remote source ({@link PageSource#remote}). */
    static final int REMOTE_READERS = 4;

    /**
     * What to check while a lazy restore runs: {@code readers} threads reading every page in a
     * random order drawn from {@code seed} and comparing it with the source (0: none; a remote
     * source gets {@link #REMOTE_READERS} times as many); a vCPU
     * reading one page in {@code guestStride} (0: none) within {@code guestTimeout}; and how long
     * to wait for the whole restore.
     */
    public record Checks(int readers, long seed, long guestStride, Duration guestTimeout, Duration populateTimeout) {
        public static Checks none() {
            return new Checks(0, 0, 0, Duration.ofMinutes(10), Duration.ofMinutes(10));
        }
    }

    /** A finished lazy restore: what it restored, its statistics, and the checks' outcomes (null where not asked for). */
    public record Outcome(
            String source,
            String format,
            String backend,
            long guestBytes,
            long dataBytes,
            Stats stats,
            int readers,
            RandomReaders.Result verify,
            GuestVerdict guestCheck) {}

    /** A memfd tells its resident pages by SEEK_DATA, a call per run; anything else is asked through its mapping, a byte a page. */
    private static RandomReaders.Residency residency(GuestMemory memory, MemorySegment mapped) {
        return memory.backend() == GuestMemory.Backend.MEMFD
                ? RandomReaders.Residency.ofFile(memory.fd(), memory.size())
                : RandomReaders.Residency.ofMapping(mapped, memory.pageSize());
    }

    /**
     * Restores {@code source} lazily into new guest memory of {@code backend}, runs {@code checks}
     * while it runs, waits until every data page is in place, and releases everything.
     *
     * @throws RestoreFailedException if the restore failed (the cause says why) or did not finish in time
     * @throws RestoreVerificationException if a reader found a page that differs from the source
     */
    public static Outcome run(PageSource source, GuestMemory.Backend backend, Options options, Checks checks)
            throws IOException {
        return run(source, backend, options, checks, Observers.none());
    }

    /**
     * What watches a restore while it runs: {@code metrics} (null: none), into which it is watched as
     * session {@code restore} and {@link dev.gmem.metrics.Metrics#finish finished} with its final
     * values; and {@code trace} (null: none), the file its {@link dev.gmem.trace.Trace} is written to
     * when it completes. That file is created before anything else (a path that cannot be written,
     * or the source itself, is refused at once) and removed if the restore fails.
     */
    public record Observers(dev.gmem.metrics.Metrics metrics, java.nio.file.Path trace) {
        public static Observers none() {
            return new Observers(null, null);
        }
    }

    /** As {@link #run(PageSource, GuestMemory.Backend, Options, Checks)}, watched by {@code observers}. */
    @SuppressWarnings("try") // the session is watched for the extent of the try, and never named in it
    public static Outcome run(
            PageSource source, GuestMemory.Backend backend, Options options, Checks checks, Observers observers)
            throws IOException {
        dev.gmem.metrics.Metrics metrics = observers.metrics();
        try (dev.gmem.util.OutputFile traceOut = observers.trace() == null
                        ? null
                        : dev.gmem.trace.TraceFile.create(observers.trace(), source.path());
                Destination dst = Destination.anonymous(backend, source);
                LazyRestore lazy = start(source, dst.memory(), options);
                Watched watched = Watched.of(metrics, "restore", lazy.engine.stats(), dst.memory()::populatedPages);
                dev.gmem.trace.TraceRecorder recorder = observers.trace() == null
                        ? null
                        : new dev.gmem.trace.TraceRecorder(lazy.engine.stats(), lazy.startNanos)) {
            GuestVerdict guest = checks.guestStride() > 0
                    ? GuestVerdict.of(
                            () -> GuestCheck.run(
                                    source, dst.memory(), lazy.memory(), checks.guestStride(), checks.guestTimeout()),
                            lazy.engine.stats()::faults)
                    : null;
            lazy.checkHealthy(); // a failed restore explains a failed guest check
            RandomReaders.Health populated = () -> {
                if (!lazy.awaitPopulated(checks.populateTimeout().toMillis())) {
                    throw new RestoreFailedException(
                            "lazy restore of " + source.name() + " did not finish in "
                                    + checks.populateTimeout().toSeconds() + " s",
                            null);
                }
            };
            RandomReaders.Result v = null;
            // a remote source's pages each cost a round trip to compare: more readers keep more of them in flight
            int readers = source.remote() ? checks.readers() * REMOTE_READERS : checks.readers();
            if (readers > 0) {
                // the readers run while the prefetch does, then take a second look at what became resident meanwhile
                v = RandomReaders.check(
                        lazy.memory(),
                        residency(dst.memory(), lazy.memory()),
                        source,
                        dst.memory().pageSize(),
                        readers,
                        checks.seed(),
                        lazy::checkHealthy,
                        populated);
            } else {
                populated.check();
            }
            if (v != null && v.wrongPages() > 0) {
                throw new RestoreVerificationException(
                        v.wrongPages() + " pages differ from " + source.name() + "; the first at guest 0x"
                                + Long.toHexString(v.firstWrongGuestAddress()),
                        v.firstWrongGuestAddress());
            }
            Stats stats = lazy.stats();
            if (recorder != null) {
                dev.gmem.trace.TraceFile.write(
                        recorder.finish(
                                "lazy restore of "
                                        + (source.path() != null ? source.path().getFileName() : source.name()) + " ("
                                        + stats.mode() + " mode)",
                                dst.memory().pageSize(),
                                source.counts().dataPages(),
                                stats.readyMs(),
                                stats.populatedMs() == null ? -1 : stats.populatedMs()),
                        traceOut);
            }
            return new Outcome(
                    source.name(),
                    source.format(),
                    backend.label(),
                    source.size(),
                    source.counts().dataBytes(),
                    stats,
                    readers,
                    v,
                    guest);
        }
    }

    /** A session watched into metrics for the extent of a try block. */
    private record Watched(dev.gmem.metrics.Metrics metrics, String name) implements AutoCloseable {
        static Watched of(
                dev.gmem.metrics.Metrics metrics,
                String name,
                FaultStats stats,
                java.util.function.LongSupplier resident) {
            if (metrics != null) metrics.watch(name, stats, resident);
            return new Watched(metrics, name);
        }

        @Override
        public void close() {
            if (metrics != null) metrics.finish(name); // the final values stay for a last scrape
        }
    }
}
