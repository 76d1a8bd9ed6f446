package dev.gmem.fault;

import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;

/**
 * The engine's counters, each credited by the path that did the work (never by which thread ran
 * it), and the fault service latency histogram.
 *
 * <ul>
 *   <li>{@code faults}: page-fault events resolved (one per event read, however many pages it filled);
 *   <li>{@code faultPages}: data pages populated by the fault path (COPY, or write() in MINOR mode),
 *       fault-around pages included;
 *   <li>{@code faultAroundPages}: of those, the pages beyond the one that faulted;
 *   <li>{@code zeroPages}: pages (zero pages, holes, removed pages) populated with zeros by the fault path;
 *   <li>{@code continues}: faults answered with UFFDIO_CONTINUE (MINOR mode);
 *   <li>{@code prefetchPages}: data pages populated by the prefetcher;
 *   <li>{@code racesLost}: faults whose page another path had populated first (EEXIST), answered
 *       with a wake;
 *   <li>{@code retries}: resolutions retried after EAGAIN (a removal was pending);
 *   <li>{@code removes}: UFFD_EVENT_REMOVE events read.
 * </ul>
 * Each data page is populated by exactly one path, so faultPages + prefetchPages is the data
 * pages in place (removals and refetches aside). The latency of a fault runs from reading its event
 * to the end of its resolution (which wakes the thread); {@code blockedNanos} is their sum, a lower
 * bound on the time faulting threads were blocked.
 */
public final class FaultStats {
    final AtomicLong faults = new AtomicLong();
    final AtomicLong faultPages = new AtomicLong();
    final AtomicLong faultAroundPages = new AtomicLong();
    final AtomicLong zeroPages = new AtomicLong();
    final AtomicLong continues = new AtomicLong();
    final AtomicLong prefetchPages = new AtomicLong();
    final AtomicLong racesLost = new AtomicLong();
    final AtomicLong retries = new AtomicLong();
    final AtomicLong removes = new AtomicLong();
    final AtomicLong blockedNanos = new AtomicLong();
    private final Histogram latency = Latency.histogram();

    /** The counters at one moment. */
    public record Counts(
            long faults,
            long faultPages,
            long zeroPages,
            long continues,
            long prefetchPages,
            long racesLost,
            long retries,
            long removes,
            double blockedMs,
            Latency latency) {}

    private final AtomicLong firstServedNanos = new AtomicLong(-1);
    private volatile long firstReadFaults = -1;

    void faultServed(long nanos) {
        firstServedNanos.compareAndSet(-1, System.nanoTime());
        faults.incrementAndGet();
        blockedNanos.addAndGet(nanos);
        synchronized (latency) {
            latency.recordValue(Math.min(nanos, Latency.MAX_NANOS));
        }
    }

    public long faults() {
        return faults.get();
    }

    /** System.nanoTime() when the first fault was served, or -1. */
    public long firstServedNanos() {
        return firstServedNanos.get();
    }

    /** The faults found waiting by the engine's first read of its userfaultfd, or -1 before it. */
    public long firstReadFaults() {
        return firstReadFaults;
    }

    void firstRead(long faults) {
        if (firstReadFaults < 0) firstReadFaults = faults;
    }

    /** The page counters by path at this moment, without the histogram: cheap enough to sample every millisecond. */
    public record Pages(long faults, long faultPages, long faultAroundPages, long zeroPages, long prefetchPages) {}

    public Pages pages() {
        // fault-around before fault pages: both grow, so a sample never shows more fault-around than fault pages
        long around = faultAroundPages.get();
        long f = faults.get();
        long fault = faultPages.get();
        return new Pages(f, fault, around, zeroPages.get(), prefetchPages.get());
    }

    /**
     * The fault latencies as the buckets of a classic histogram: how many fell at or under each of
     * {@code upperBoundsNanos} (ascending) and above the previous bound, the last element for those
     * above every bound. For live metrics.
     */
    public long[] latencyBuckets(long[] upperBoundsNanos) {
        long[] counts = new long[upperBoundsNanos.length + 1];
        synchronized (latency) {
            long below = 0;
            for (int i = 0; i < upperBoundsNanos.length; i++) {
                long upTo = latency.getTotalCount() == 0 ? 0 : latency.getCountBetweenValues(0, upperBoundsNanos[i]);
                counts[i] = upTo - below;
                below = upTo;
            }
            counts[upperBoundsNanos.length] = latency.getTotalCount() - below;
        }
        return counts;
    }

    /** Adds this engine's fault latencies to {@code h} (a {@link Latency#histogram}): for totals over many engines. */
    public void addLatencyTo(org.HdrHistogram.Histogram h) {
        synchronized (latency) {
            h.add(latency);
        }
    }

    /**
     * The sum of {@code counts} (the latency percentiles aside, which do not add up: they are
     * those of {@code latencies}, every engine's histogram merged).
     */
    public static Counts sum(List<Counts> counts, org.HdrHistogram.Histogram latencies) {
        long[] t = new long[8];
        double blocked = 0;
        for (Counts c : counts) {
            t[0] += c.faults();
            t[1] += c.faultPages();
            t[2] += c.zeroPages();
            t[3] += c.continues();
            t[4] += c.prefetchPages();
            t[5] += c.racesLost();
            t[6] += c.retries();
            t[7] += c.removes();
            blocked += c.blockedMs();
        }
        return new Counts(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], blocked, Latency.of(latencies));
    }

    public Counts counts() {
        Latency l;
        synchronized (latency) {
            l = Latency.of(latency);
        }
        return new Counts(
                faults.get(),
                faultPages.get(),
                zeroPages.get(),
                continues.get(),
                prefetchPages.get(),
                racesLost.get(),
                retries.get(),
                removes.get(),
                blockedNanos.get() / 1e6,
                l);
    }
}
