package dev.gmem.fault;

import org.HdrHistogram.Histogram;

/** Percentiles of a latency histogram recorded in nanoseconds, in microseconds rounded to 0.01. */
public record Latency(long count, double p50Us, double p90Us, double p99Us, double maxUs, double meanUs) {
    /** The largest latency a histogram records; longer ones are recorded as this. */
    public static final long MAX_NANOS = 60_000_000_000L;

    /** A histogram for {@link #of}: nanoseconds up to {@link #MAX_NANOS}, three significant digits. */
    public static Histogram histogram() {
        return new Histogram(MAX_NANOS, 3);
    }

    public static Latency of(Histogram h) {
        long n = h.getTotalCount();
        return new Latency(
                n,
                us(h.getValueAtPercentile(50)),
                us(h.getValueAtPercentile(90)),
                us(h.getValueAtPercentile(99)),
                us(h.getMaxValue()),
                n == 0 ? 0 : Math.round(h.getMean() / 10.0) / 100.0);
    }

    private static double us(long nanos) {
        return Math.round(nanos / 10.0) / 100.0;
    }
}
