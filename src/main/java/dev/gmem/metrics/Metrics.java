package dev.gmem.metrics;

import dev.gmem.fault.FaultStats;
import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.registry.PrometheusRegistry;
import io.prometheus.metrics.model.snapshots.ClassicHistogramBuckets;
import io.prometheus.metrics.model.snapshots.CounterSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.HistogramSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.LongSupplier;

/**
 * gmem's live metrics: one Prometheus registry into which every fault-serving session (a lazy
 * restore, later a handler's VM) is watched while it runs. Nothing is recorded twice: the fault
 * engine counts in its {@link FaultStats} on its own paths, and a scrape reads those counters and
 * its latency histogram at that moment. Safe for use by many threads.
 *
 * <p>Families, each with a {@code session} label:
 * <ul>
 *   <li>{@code gmem_pages_total{path}}: pages populated, by path: {@code fault} (data, fault-around
 *       included), {@code zero} (zero pages and holes by faults), {@code prefetch};
 *   <li>{@code gmem_faults_total}: fault events served; {@code gmem_races_lost_total}: those whose
 *       page was already there (a wake). Two counters, each only ever growing: a difference of
 *       the two could go down between their increments, which Prometheus reads as a reset;
 *   <li>{@code gmem_fault_retries_total}, {@code gmem_removes_total}, {@code gmem_continues_total};
 *   <li>{@code gmem_fault_latency_seconds}: a histogram of fault service times;
 *   <li>{@code gmem_resident_pages}: pages of guest memory in place;
 *   <li>{@code gmem_sessions} (no label): sessions being served ({@link #finish ended} ones keep
 *       their final series but do not count).
 * </ul>
 */
public final class Metrics {
    /** Histogram bounds: from 5 µs (a resolved fault here takes 12–14 µs end to end) to 1 s. */
    private static final long[] BOUNDS_NANOS = {
        5_000,
        10_000,
        15_000,
        20_000,
        30_000,
        50_000,
        100_000,
        250_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000
    };

    private final PrometheusRegistry registry = new PrometheusRegistry();
    private final Map<String, Session> sessions = new LinkedHashMap<>();

    private record Session(FaultStats stats, LongSupplier residentPages, boolean running) {}

    public Metrics() {
        registry.register((MultiCollector) this::collect);
    }

    /** The registry to expose (see {@link MetricsServer}). */
    public PrometheusRegistry registry() {
        return registry;
    }

    /** Serves {@code name}'s counters from now on; {@code residentPages} is read at each scrape. */
    public void watch(String name, FaultStats stats, LongSupplier residentPages) {
        synchronized (sessions) {
            Session old = sessions.get(name);
            if (old != null && old.running()) {
                throw new IllegalArgumentException("a metrics session named " + name + " is already watched");
            }
            sessions.put(name, new Session(stats, residentPages, true));
        }
    }

    /**
     * Marks {@code name} ended: its series stay, with their final values (its resident pages read
     * now, once), so that a scrape after the end still sees them; it no longer counts in
     * {@code gmem_sessions}.
     */
    public void finish(String name) {
        synchronized (sessions) {
            Session s = sessions.get(name);
            if (s == null || !s.running()) return;
            long resident = s.residentPages().getAsLong();
            sessions.put(name, new Session(s.stats(), () -> resident, false));
        }
    }

    /** Stops serving {@code name}: its series disappear from the next scrape. */
    public void unwatch(String name) {
        synchronized (sessions) {
            sessions.remove(name);
        }
    }

    private MetricSnapshots collect() {
        Map<String, Session> now;
        synchronized (sessions) {
            now = new LinkedHashMap<>(sessions);
        }
        CounterSnapshot.Builder pages = CounterSnapshot.builder()
                .name("gmem_pages")
                .help("Pages of guest memory populated, by the path that did it.");
        CounterSnapshot.Builder faults =
                CounterSnapshot.builder().name("gmem_faults").help("Page-fault events served.");
        CounterSnapshot.Builder races = CounterSnapshot.builder()
                .name("gmem_races_lost")
                .help("Faults whose page another path had put in place first (EEXIST), answered with a wake.");
        CounterSnapshot.Builder retries = CounterSnapshot.builder()
                .name("gmem_fault_retries")
                .help("Fault resolutions retried after EAGAIN (a removal was pending).");
        CounterSnapshot.Builder removes =
                CounterSnapshot.builder().name("gmem_removes").help("UFFD_EVENT_REMOVE events read.");
        CounterSnapshot.Builder continues = CounterSnapshot.builder()
                .name("gmem_continues")
                .help("Faults answered with UFFDIO_CONTINUE (MINOR mode).");
        HistogramSnapshot.Builder latency = HistogramSnapshot.builder()
                .name("gmem_fault_latency_seconds")
                .help(
                        "Fault service time, from reading the event to the end of its resolution (which wakes the thread).");
        GaugeSnapshot.Builder resident =
                GaugeSnapshot.builder().name("gmem_resident_pages").help("Pages of guest memory in place.");
        double[] bounds = new double[BOUNDS_NANOS.length + 1];
        for (int i = 0; i < BOUNDS_NANOS.length; i++) bounds[i] = BOUNDS_NANOS[i] / 1e9;
        bounds[BOUNDS_NANOS.length] = Double.POSITIVE_INFINITY;
        for (Map.Entry<String, Session> e : now.entrySet()) {
            String s = e.getKey();
            FaultStats.Counts c = e.getValue().stats().counts();
            pages.dataPoint(counter(c.faultPages(), "session", s, "path", "fault"));
            pages.dataPoint(counter(c.zeroPages(), "session", s, "path", "zero"));
            pages.dataPoint(counter(c.prefetchPages(), "session", s, "path", "prefetch"));
            faults.dataPoint(counter(c.faults(), "session", s));
            races.dataPoint(counter(c.racesLost(), "session", s));
            retries.dataPoint(counter(c.retries(), "session", s));
            removes.dataPoint(counter(c.removes(), "session", s));
            continues.dataPoint(counter(c.continues(), "session", s));
            latency.dataPoint(HistogramSnapshot.HistogramDataPointSnapshot.builder()
                    .labels(Labels.of("session", s))
                    .classicHistogramBuckets(ClassicHistogramBuckets.of(
                            bounds, e.getValue().stats().latencyBuckets(BOUNDS_NANOS)))
                    .sum(c.blockedMs() / 1e3)
                    .build());
            resident.dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder()
                    .labels(Labels.of("session", s))
                    .value(e.getValue().residentPages().getAsLong())
                    .build());
        }
        List<io.prometheus.metrics.model.snapshots.MetricSnapshot> out = new ArrayList<>(List.of(
                pages.build(),
                faults.build(),
                races.build(),
                retries.build(),
                removes.build(),
                continues.build(),
                latency.build(),
                resident.build()));
        out.add(GaugeSnapshot.builder()
                .name("gmem_sessions")
                .help("Fault-serving sessions being served.")
                .dataPoint(GaugeSnapshot.GaugeDataPointSnapshot.builder()
                        .value(now.values().stream().filter(Session::running).count())
                        .build())
                .build());
        return new MetricSnapshots(out);
    }

    private static CounterSnapshot.CounterDataPointSnapshot counter(long value, String... labels) {
        return CounterSnapshot.CounterDataPointSnapshot.builder()
                .labels(Labels.of(labels))
                .value(value)
                .build();
    }
}
