package dev.gmem.restore;

import dev.gmem.fault.Latency;
import dev.gmem.snapshot.ChunkReader;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;
import java.util.concurrent.atomic.AtomicLong;
import org.HdrHistogram.Histogram;

/**
 * Threads that read every page of guest memory once, in a random order, and compare each byte
 * with the source: the check of a lazy restore while it runs. Each first read of a missing page
 * blocks on its fault, so the time of every read is recorded too: that is the fault latency a
 * guest thread sees.
 */
public final class RandomReaders {
    private RandomReaders() {}

    /**
     * @param wrongPages pages that differ from the source; {@code firstWrongGuestAddress} the first one found (-1: none)
     * @param accessLatency every page read, in microseconds: p50, p90, p99, max
     */
    public record Result(long pages, long wrongPages, long firstWrongGuestAddress, double elapsedMs, Latency accessLatency) {}

    /** Says, after each page read, whether reading should go on: throws the error of the restore that fills the memory. */
    @FunctionalInterface
    public interface Health {
        void check() throws IOException;
    }

    /** Reads all of {@code guest} (laid out as {@code source}'s regions) on {@code threads} threads in an order drawn from {@code seed}. */
    public static Result check(MemorySegment guest, PageSource source, long pageSize, int threads, long seed) throws IOException {
        return check(guest, source, pageSize, threads, seed, () -> {});
    }

    /**
     * As {@link #check(MemorySegment, PageSource, long, int, long)}, asking {@code health} after
     * every page: its error (a lazy restore that failed) stops every reader and is thrown.
     */
    public static Result check(MemorySegment guest, PageSource source, long pageSize, int threads, long seed, Health health) throws IOException {
        long pages = source.size() / pageSize;
        long[] order = permutation(pages, seed);
        PageIndex index = new PageIndex(source);
        AtomicLong wrong = new AtomicLong();
        AtomicLong firstWrong = new AtomicLong(-1);
        Histogram latency = Latency.histogram();
        long t0 = System.nanoTime();
        try (Arena arena = Arena.ofShared()) {
            MemorySegment zeros = arena.allocate(pageSize, pageSize);
            long share = (pages + threads - 1) / threads;
            dev.gmem.util.Parallel.forEach(threads, "gmem-reader", threads, t -> {
                Histogram mine = Latency.histogram();
                try (ChunkReader reader = new ChunkReader(source)) {
                    for (long k = t * share; k < Math.min(pages, (t + 1) * share); k++) {
                        long offset = order[(int) k] * pageSize;
                        PageIndex.Location at = index.atFileOffset(offset);
                        MemorySegment expected = at != null && at.kind() == PageKind.DATA ? reader.page(at) : zeros;
                        long s = System.nanoTime();
                        // in C: a thread blocked on a fault must not be inside Java code (see Posix.mismatch)
                        long diff = dev.gmem.linux.Posix.mismatch(guest.asSlice(offset, pageSize), expected, pageSize);
                        mine.recordValue(Math.min(System.nanoTime() - s, Latency.MAX_NANOS));
                        health.check();
                        if (diff >= 0) {
                            wrong.incrementAndGet();
                            firstWrong.compareAndSet(-1, index.guestOfFileOffset(offset));
                        }
                    }
                }
                synchronized (latency) {
                    latency.add(mine);
                }
            });
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        return new Result(pages, wrong.get(), firstWrong.get(), ms, Latency.of(latency));
    }

    private static long[] permutation(long n, long seed) {
        long[] p = new long[Math.toIntExact(n)];
        for (int i = 0; i < p.length; i++) p[i] = i;
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = p.length - 1; i > 0; i--) {
            int j = r.nextInt(i + 1);
            long x = p[i];
            p[i] = p[j];
            p[j] = x;
        }
        return p;
    }
}
