package dev.gmem.restore;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.snapshot.ChunkReader;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.Snapshot;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** The decoded-chunk cache every fetcher of a provider shares: right bytes under contention, few slots, failures retried. */
class DecodedChunksTest {
    @TempDir
    Path dir;

    @Test
    @Timeout(value = 120, unit = TimeUnit.SECONDS)
    void manyThreadsOverFewSlotsEachGetTheirChunksBytes() throws Exception {
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", 16L << 20, 71), dir.resolve("s.snap"), Codec.ZSTD);
        try (Snapshot s = Snapshot.open(snap)) {
            int chunks = s.chunks().size();
            List<byte[]> want = new ArrayList<>();
            try (ChunkReader r = new ChunkReader(s)) {
                for (int c = 0; c < chunks; c++)
                    want.add(r.chunk(c)
                            .run(0, s.chunks().get(c).dataPages())
                            .toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
            }
            DecodedChunks cache = new DecodedChunks(s, 3);
            int threads = 8, rounds = 150;
            ConcurrentLinkedQueue<String> wrong = new ConcurrentLinkedQueue<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                long seed = t;
                ts.add(Thread.ofPlatform().start(() -> {
                    Random rnd = new Random(seed);
                    try {
                        for (int i = 0; i < rounds; i++) {
                            int c = rnd.nextInt(chunks);
                            DecodedChunks.Slot slot = cache.acquire(c, s::readVerified);
                            try {
                                MemorySegment got =
                                        slot.data().run(0, s.chunks().get(c).dataPages());
                                if (got.mismatch(MemorySegment.ofArray(want.get(c))) >= 0) wrong.add("chunk " + c);
                            } finally {
                                cache.release(slot);
                            }
                        }
                    } catch (IOException | RuntimeException e) {
                        wrong.add(e.toString());
                    }
                }));
            }
            for (Thread t : ts) t.join(60_000);
            assertThat(wrong).isEmpty();
            long[] hd = cache.hitsAndDecodes();
            assertThat(hd[0] + hd[1]).isEqualTo((long) threads * rounds);
            assertThat(hd[1])
                    .as("decoded at least once each, and no more often than asked")
                    .isBetween(1L, (long) threads * rounds);
            cache.close();
            assertThatThrownBy(() -> cache.acquire(0, s::readVerified)).isInstanceOf(IllegalStateException.class);
        }
    }

    @Test
    void aFailedDecodeLeavesItsSlotEmptyAndTheNextFetchTriesAgain() throws Exception {
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", 4L << 20, 73), dir.resolve("s.snap"), Codec.LZ4);
        try (Snapshot s = Snapshot.open(snap)) {
            DecodedChunks cache = new DecodedChunks(s, 1);
            assertThatThrownBy(() -> cache.acquire(0, (c, scratch) -> {
                        throw new IOException("the disk went away");
                    }))
                    .hasMessage("the disk went away");
            // the one slot is free again: the same chunk decodes now
            DecodedChunks.Slot slot = cache.acquire(0, s::readVerified);
            assertThat(slot.data()).isNotNull();
            cache.release(slot);
            assertThat(cache.hitsAndDecodes()[1]).isEqualTo(2);
            // and a second acquire of it is a hit
            cache.release(cache.acquire(0, (c, scratch) -> {
                throw new AssertionError("cached: not decoded again");
            }));
            assertThat(cache.hitsAndDecodes()[0]).isEqualTo(1);
            assertThatThrownBy(() -> cache.release(slot)).isInstanceOf(IllegalStateException.class);
        }
    }
}
