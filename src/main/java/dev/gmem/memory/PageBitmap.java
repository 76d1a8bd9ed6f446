package dev.gmem.memory;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One bit per page, safe for concurrent use: single bits and ranges are set and cleared with
 * atomic word operations, and {@link #claim} takes a run of clear bits atomically, 64 pages per
 * compare-and-set. 1 TiB of 4 KiB pages costs 32 MiB.
 */
public final class PageBitmap {
    private static final VarHandle WORDS = MethodHandles.arrayElementVarHandle(long[].class);

    private final long[] words;
    private final long pages;

    public PageBitmap(long pages) {
        this.pages = pages;
        this.words = new long[Math.toIntExact((pages + 63) >>> 6)];
    }

    public long pages() {
        return pages;
    }

    private static int word(long page) {
        return (int) (page >>> 6);
    }

    /** Bits {@code [lo, hi)} of a word, 0 <= lo <= hi <= 64. */
    private static long mask(long lo, long hi) {
        if (lo >= hi) return 0;
        long upper = hi == 64 ? -1L : (1L << hi) - 1;
        return upper & (-1L << lo);
    }

    public boolean get(long page) {
        return ((long) WORDS.getVolatile(words, word(page)) & (1L << (page & 63))) != 0;
    }

    public void set(long page) {
        WORDS.getAndBitwiseOr(words, word(page), 1L << (page & 63));
    }

    public void clear(long page) {
        WORDS.getAndBitwiseAnd(words, word(page), ~(1L << (page & 63)));
    }

    public void setRange(long from, long to) {
        for (long p = from; p < to; ) {
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            WORDS.getAndBitwiseOr(words, word(p), mask(lo, hi));
            p += hi - lo;
        }
    }

    /** Sets bits {@code [from, to)}; returns how many of them this call set (were clear before it), atomically per word. */
    public long setRangeCounting(long from, long to) {
        long added = 0;
        for (long p = from; p < to; ) {
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            long m = mask(lo, hi);
            long before = (long) WORDS.getAndBitwiseOr(words, word(p), m);
            added += Long.bitCount(m & ~before);
            p += hi - lo;
        }
        return added;
    }

    public void clearRange(long from, long to) {
        for (long p = from; p < to; ) {
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            WORDS.getAndBitwiseAnd(words, word(p), ~mask(lo, hi));
            p += hi - lo;
        }
    }

    /**
     * Atomically sets the clear bits from {@code from} up to the first bit already set (or
     * {@code to}) and returns where that run ends: {@code from} when the first bit was already set.
     * Two callers never claim the same page.
     */
    public long claim(long from, long to) {
        long p = from;
        while (p < to) {
            int w = word(p);
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            long wanted = mask(lo, hi);
            while (true) {
                long current = (long) WORDS.getVolatile(words, w);
                long taken = current & wanted;
                long take = taken == 0 ? wanted : mask(lo, Long.numberOfTrailingZeros(taken));
                if (take == 0) return p;
                if (WORDS.compareAndSet(words, w, current, current | take)) {
                    if (taken != 0) return ((long) w << 6) + Long.numberOfTrailingZeros(taken);
                    break;
                }
            }
            p += hi - lo;
        }
        return to;
    }

    /** The first set bit in {@code [from, to)}, or {@code to}. */
    public long nextSet(long from, long to) {
        return next(from, to, false);
    }

    /** The first clear bit in {@code [from, to)}, or {@code to}. */
    public long nextClear(long from, long to) {
        return next(from, to, true);
    }

    private long next(long from, long to, boolean clear) {
        for (long p = from; p < to; ) {
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            long w = (long) WORDS.getVolatile(words, word(p));
            long hits = (clear ? ~w : w) & mask(lo, hi);
            if (hits != 0) return (p & ~63L) + Long.numberOfTrailingZeros(hits);
            p += hi - lo;
        }
        return to;
    }

    /** How many bits are set in {@code [from, to)}. */
    public long count(long from, long to) {
        long n = 0;
        for (long p = from; p < to; ) {
            long lo = p & 63;
            long hi = Math.min(64, lo + (to - p));
            n += Long.bitCount((long) WORDS.getVolatile(words, word(p)) & mask(lo, hi));
            p += hi - lo;
        }
        return n;
    }

    /** A copy of the bits, 64 pages a word, page 0 in bit 0 of word 0. */
    public long[] toWords() {
        long[] out = new long[words.length];
        for (int i = 0; i < words.length; i++) out[i] = (long) WORDS.getVolatile(words, i);
        return out;
    }

    /** Sets every bit set in {@code other} (as {@link #toWords} gives them; bits past {@link #pages} are ignored). */
    public void setAll(long[] other) {
        for (int i = 0; i < Math.min(words.length, other.length); i++) {
            long w = other[i];
            if (i == words.length - 1 && (pages & 63) != 0) w &= (1L << (pages & 63)) - 1;
            if (w != 0) WORDS.getAndBitwiseOr(words, i, w);
        }
    }

    /** Heap bytes this bitmap holds. */
    public long footprintBytes() {
        return 16L + 8L * words.length;
    }
}
