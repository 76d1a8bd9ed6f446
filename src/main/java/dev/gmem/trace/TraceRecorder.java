package dev.gmem.trace;

import dev.gmem.fault.FaultStats;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

/**
 * Samples a fault engine's counters every millisecond on a daemon thread of its own
 * ({@code gmem-trace}), keeping a sample only when something changed: a trace costs the fault path
 * nothing, and a long quiet stretch costs nothing either. {@link #finish} stops it and returns the
 * {@link Trace}.
 */
public final class TraceRecorder implements AutoCloseable {
    private static final long PERIOD_NANOS = 1_000_000;
    private static final long[] LATENCY_BOUNDS_US = {2, 5, 10, 15, 20, 30, 50, 100, 250, 1000, 10_000, 100_000};

    private final FaultStats stats;
    private final long startNanos;
    private final List<Trace.Sample> samples = new ArrayList<>();
    private final Thread thread;
    private volatile boolean stopped;
    private FaultStats.Pages last; // the sampler's, then finish's (after the sampler stopped)

    /** Starts sampling {@code stats}, times counted from {@code startNanos} (System.nanoTime). */
    public TraceRecorder(FaultStats stats, long startNanos) {
        this.stats = stats;
        this.startNanos = startNanos;
        this.thread = Thread.ofPlatform().daemon().name("gmem-trace").start(this::sample);
    }

    private void sample() {
        while (!stopped) {
            last = take(last);
            LockSupport.parkNanos(PERIOD_NANOS);
        }
    }

    private FaultStats.Pages take(FaultStats.Pages last) {
        FaultStats.Pages p = stats.pages();
        if (!p.equals(last)) {
            Trace.Sample s = new Trace.Sample(
                    (System.nanoTime() - startNanos) / 1e6,
                    p.faults(),
                    p.faultPages(),
                    p.faultAroundPages(),
                    p.zeroPages(),
                    p.prefetchPages());
            synchronized (samples) {
                samples.add(s);
            }
        }
        return p;
    }

    /** Stops sampling (after a last sample) and returns the trace, with the moments and the latency histogram now. */
    public Trace finish(String what, long pageSize, long dataPages, double readyMs, double populatedMs) {
        close();
        last = take(last); // a last sample only if something changed: the picture ends where the work did
        long[] bounds = LATENCY_BOUNDS_US;
        long[] nanos = new long[bounds.length];
        for (int i = 0; i < bounds.length; i++) nanos[i] = bounds[i] * 1000;
        long[] counts = stats.latencyBuckets(nanos);
        List<Trace.Sample> copy;
        synchronized (samples) {
            copy = List.copyOf(samples);
        }
        return new Trace(
                what,
                pageSize,
                dataPages,
                copy,
                readyMs,
                populatedMs,
                java.util.Arrays.stream(bounds).boxed().toList(),
                java.util.Arrays.stream(counts).boxed().toList());
    }

    @Override
    public void close() {
        stopped = true;
        LockSupport.unpark(thread);
        try {
            thread.join(); // parks a millisecond at a time: it ends at once, and finish must not race it
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
