package dev.gmem.memory;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class PageBitmapTest {
    /** Every operation against java.util.BitSet, over random ranges that start and end anywhere in a word. */
    @Test
    void agreesWithAReferenceModel() {
        Random random = new Random(42);
        for (int round = 0; round < 2_000; round++) {
            int pages = 1 + random.nextInt(300);
            PageBitmap bits = new PageBitmap(pages);
            BitSet model = new BitSet(pages);
            for (int op = 0; op < 40; op++) {
                int from = random.nextInt(pages + 1);
                int to = from + random.nextInt(pages - from + 1);
                switch (random.nextInt(5)) {
                    case 0 -> {
                        bits.setRange(from, to);
                        model.set(from, to);
                    }
                    case 1 -> {
                        bits.clearRange(from, to);
                        model.clear(from, to);
                    }
                    case 2 -> {
                        long end = bits.claim(from, to);
                        int firstSet = model.nextSetBit(from);
                        long expected = firstSet < 0 || firstSet >= to ? to : firstSet;
                        assertThat(end).isEqualTo(expected);
                        model.set(from, (int) end);
                    }
                    case 3 -> {
                        int s = model.nextSetBit(from);
                        int c = model.nextClearBit(from);
                        assertThat(bits.nextSet(from, to)).isEqualTo(s < 0 || s >= to ? to : s);
                        assertThat(bits.nextClear(from, to)).isEqualTo(c >= to ? to : c);
                    }
                    default ->
                        assertThat(bits.count(from, to))
                                .isEqualTo(model.get(from, to).cardinality());
                }
            }
            for (int p = 0; p < pages; p++) assertThat(bits.get(p)).isEqualTo(model.get(p));
        }
    }

    /** Threads claiming overlapping runs never take the same page. */
    @Test
    void concurrentClaimsNeverOverlap() throws Exception {
        int pages = 4096;
        PageBitmap bits = new PageBitmap(pages);
        AtomicIntegerArray owners = new AtomicIntegerArray(pages);
        ExecutorService pool = Executors.newFixedThreadPool(4);
        try {
            List<Future<Long>> claimed = new ArrayList<>();
            for (int t = 1; t <= 4; t++) {
                int id = t;
                claimed.add(pool.submit(() -> {
                    Random r = new Random(id);
                    long mine = 0;
                    for (int i = 0; i < 20_000; i++) {
                        int from = r.nextInt(pages);
                        long end = bits.claim(from, Math.min(pages, from + 1 + r.nextInt(200)));
                        for (long p = from; p < end; p++) {
                            assertThat(owners.compareAndSet((int) p, 0, id)).isTrue();
                        }
                        mine += end - from;
                    }
                    return mine;
                }));
            }
            long total = 0;
            for (Future<Long> f : claimed) total += f.get();
            assertThat(total).isEqualTo(bits.count(0, pages));
        } finally {
            pool.shutdownNow();
        }
    }

    /** The per-page state of 1 TiB of guest memory (populated, private and fallocated bitmaps) fits in 100 MiB. */
    @Test
    void oneTebibyteOfStateFitsIn100MiB() {
        long pages = (1L << 40) / 4096;
        long bytes = 3 * new PageBitmap(pages).footprintBytes();
        assertThat(bytes).isLessThan(100L << 20);
    }

    @Test
    void setRangeCountingCountsEachBitOnceAcrossThreads() throws Exception {
        PageBitmap b = new PageBitmap(1 << 16);
        assertThat(b.setRangeCounting(10, 200)).isEqualTo(190);
        assertThat(b.setRangeCounting(0, 300)).isEqualTo(110); // 10 before, 100 after
        java.util.concurrent.atomic.AtomicLong total = new java.util.concurrent.atomic.AtomicLong();
        Thread[] ts = new Thread[4];
        for (int t = 0; t < ts.length; t++) {
            ts[t] = Thread.ofPlatform().start(() -> {
                for (long p = 300; p < (1 << 16); p += 37)
                    total.addAndGet(b.setRangeCounting(p, Math.min(1 << 16, p + 64)));
            });
        }
        for (Thread t : ts) t.join();
        assertThat(total.get()).as("every bit set once, whoever set it").isEqualTo((1 << 16) - 300);
        assertThat(b.count(0, 1 << 16)).isEqualTo(1 << 16);
    }
}
