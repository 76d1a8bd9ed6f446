package dev.gmem.bench;

import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import java.io.IOException;
import java.util.Arrays;

/** What every benchmark here shares: memory warm-up, settling between runs, and summary statistics. */
final class BenchSupport {
    private static final long SETTLE_MILLIS = 150;

    private BenchSupport() {}

    static double median(double[] values) {
        double[] t = values.clone();
        Arrays.sort(t);
        return t.length % 2 == 1 ? t[t.length / 2] : (t[t.length / 2 - 1] + t[t.length / 2]) / 2;
    }

    static double min(double[] values) {
        return Arrays.stream(values).min().orElse(Double.NaN);
    }

    static double max(double[] values) {
        return Arrays.stream(values).max().orElse(Double.NaN);
    }

    static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }

    /** The rate of {@code bytes} moved in {@code ms} milliseconds, in GiB/s. */
    static double gibPerS(double bytes, double ms) {
        return bytes / (1L << 30) / (ms / 1000);
    }

    /** {@code warm} if not negative, else 80% of the memory available now. */
    static long warmBytes(long warm) {
        return warm >= 0 ? warm : availableMemory() / 5 * 4;
    }

    /**
     * Touches {@code bytes} of fresh memory once and frees it. On virtual machines whose host backs
     * guest RAM lazily, the first touch of never-used memory is far slower than any later one; this
     * keeps that cost out of the timed runs.
     */
    static void warmMemory(long bytes) throws IOException {
        long warm = bytes - bytes % Posix.pageSize();
        if (warm <= 0) return;
        try (Mapping m = Mapping.anonymous(warm)) {
            m.advise(0, warm, Linux.MADV_POPULATE_WRITE);
        }
    }

    /** A pause between runs, so that memory freed by one run is back before the next. */
    static void settle() throws IOException {
        try {
            Thread.sleep(SETTLE_MILLIS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }

    static long availableMemory() {
        return dev.gmem.util.HostMemory.available();
    }
}
