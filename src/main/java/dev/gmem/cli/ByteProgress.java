package dev.gmem.cli;

import java.util.Locale;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;

/**
 * A progress bar for work measured in bytes: done and total, percent, rate and ETA, on one
 * terminal line, shown only once the work has run for a second and refreshed at most ten times
 * a second. Silent when the {@link Progress} line is (not a terminal, or --json). Thread-safe:
 * workers report the bytes they finish.
 */
final class ByteProgress implements LongConsumer {
    private static final long SHOW_AFTER_NANOS = 1_000_000_000L;
    private static final long REFRESH_NANOS = 100_000_000L;

    private final Progress line;
    private final String label;
    private final long total;
    private final long start = System.nanoTime();
    private final AtomicLong done = new AtomicLong();
    private final AtomicLong lastShown = new AtomicLong();

    ByteProgress(Progress line, String label, long total) {
        this.line = line;
        this.label = label;
        this.total = total;
    }

    @Override
    public void accept(long bytes) {
        long now = done.addAndGet(bytes);
        long t = System.nanoTime();
        long elapsed = t - start;
        long last = lastShown.get();
        if (elapsed < SHOW_AFTER_NANOS || t - last < REFRESH_NANOS || !lastShown.compareAndSet(last, t)) return;
        synchronized (this) {
            line.accept(render(now, elapsed));
        }
    }

    String render(long now, long elapsedNanos) {
        double seconds = elapsedNanos / 1e9;
        double rate = now / seconds;
        StringBuilder b = new StringBuilder(label).append(' ');
        if (total > 0) {
            int width = 24;
            int filled = (int) Math.min(width, width * now / total);
            b.append('[')
                    .append("#".repeat(filled))
                    .append(" ".repeat(width - filled))
                    .append("] ");
            b.append(String.format(Locale.ROOT, "%3d%% ", Math.min(100, 100 * now / total)));
        }
        b.append(Sizes.format(now));
        if (total > 0) b.append(" / ").append(Sizes.format(total));
        b.append(String.format(Locale.ROOT, "  %s/s", Sizes.format((long) rate)));
        if (total > 0 && rate > 0 && now < total)
            b.append(String.format(Locale.ROOT, "  ETA %.1f s", (total - now) / rate));
        return b.toString();
    }
}
