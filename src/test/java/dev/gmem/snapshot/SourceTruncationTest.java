package dev.gmem.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.LazyRestore;
import dev.gmem.restore.RestoreFailedException;
import dev.gmem.testing.Host;
import java.io.RandomAccessFile;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Sources truncated by another writer after gmem opened them: every reader gets a
 * SourceChangedException naming the file, never a SIGBUS that takes the JVM down (this test would
 * kill the test JVM if one did).
 */
class SourceTruncationTest {
    static final long SIZE = 8L << 20;

    @TempDir
    Path dir;

    static void truncate(Path p, long size) throws Exception {
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(size);
        }
    }

    @ParameterizedTest
    @EnumSource(
            value = Codec.class,
            names = {"NONE", "ZSTD"})
    void aTruncatedSnapshotFailsEveryReaderCleanly(Codec codec) throws Exception {
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 61), dir.resolve("s.snap"), codec);
        try (Snapshot s = Snapshot.open(snap)) {
            truncate(snap, s.fileSize() / 3);
            assertThatThrownBy(() -> s.verify(2, b -> {}))
                    .isInstanceOf(SourceChangedException.class)
                    .hasMessageContaining(snap.toString())
                    .hasMessageContaining("changed while being read");
            try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
                assertThatThrownBy(() ->
                                EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), b -> {}))
                        .isInstanceOf(SourceChangedException.class);
                assertThat(d.memory().populatedPages())
                        .as("nothing reached guest memory")
                        .isZero();
            }
            assertThatThrownBy(() -> SnapshotWriter.unpack(s, dir.resolve("out.raw"), 2, b -> {}))
                    .isInstanceOf(SourceChangedException.class);
            assertThatThrownBy(() -> SnapshotWriter.pack(s, dir.resolve("again.snap"), Codec.LZ4, new long[0], b -> {}))
                    .isInstanceOf(SourceChangedException.class);
        }
        assertThat(dev.gmem.testing.Leaks.partials(dir)).isEmpty();
    }

    @Test
    void aLazyRestoreOfATruncatedSnapshotStopsWithTheReason() throws Exception {
        Host.assumeUserfaultfd();
        Path snap = Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, 62), dir.resolve("s.snap"), Codec.NONE);
        try (Snapshot s = Snapshot.open(snap);
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(UffdMode.MISSING).withPrefetch(false))) {
            truncate(snap, 8192);
            long page = -1;
            for (Chunk c : s.chunks()) {
                if (c.dataPages() > 0) {
                    for (int p = 0; p < c.pages() && page < 0; p++)
                        if (c.kind(p) == PageKind.DATA) page = (c.firstPage() + p) * 4096;
                    break;
                }
            }
            long at = page;
            // a vCPU-like reader faults on a data page: the fault thread's read of its chunk comes up short
            Thread reader = Thread.ofPlatform().start(() -> {
                try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
                    dev.gmem.linux.Posix.copy(lazy.memory().asSlice(at, 4096), a.allocate(4096), 4096);
                }
            });
            reader.join(5000);
            assertThat(reader.isAlive()).as("released").isFalse();
            assertThatThrownBy(lazy::checkHealthy)
                    .isInstanceOf(RestoreFailedException.class)
                    .hasMessageContaining("changed while being read")
                    .cause()
                    .isInstanceOf(SourceChangedException.class);
        }
    }

    @Test
    void aTruncatedRawFileFailsPackAndRestoreCleanly() throws Exception {
        Path raw = Fixtures.raw(dir, "raw", SIZE, 63);
        try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
            truncate(raw, SIZE / 4);
            assertThatThrownBy(
                            () -> SnapshotWriter.pack(image, dir.resolve("s.snap"), Codec.ZSTD, new long[0], b -> {}))
                    .isInstanceOf(SourceChangedException.class)
                    .hasMessageContaining(raw.toString());
            // population reads a raw file in place: pwrite gets EFAULT, a Java copy an InternalError; both are
            // explained
            for (dev.gmem.restore.Strategy strategy : List.of(
                    dev.gmem.restore.Strategy.WRITE,
                    dev.gmem.restore.Strategy.MAPPED_COPY,
                    dev.gmem.restore.Strategy.POPULATE_COPY)) {
                try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, image.size())) {
                    assertThatThrownBy(() -> EagerRestore.restore(
                                    image, d.memory(), new EagerRestore.Options(strategy, 1, false), b -> {}))
                            .as(strategy.label())
                            .isInstanceOf(SourceChangedException.class)
                            .hasMessageContaining("bytes when opened");
                }
            }
        }
        assertThat(dev.gmem.testing.Leaks.partials(dir)).isEmpty();
    }
}
