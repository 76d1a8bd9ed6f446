package dev.gmem.snapshot;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.LongConsumer;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Every kind of bad input fails before guest memory is written, with a message that names the file, the place and what was expected. */
class SnapshotCorruptionTest {
    static final long SIZE = 4L << 20;

    @TempDir
    Path dir;

    Path raw;
    byte[] good;

    @BeforeEach
    void snapshot() throws Exception {
        raw = Fixtures.raw(dir, "raw", SIZE, 21);
        good = Fixtures.bytes(Fixtures.pack(raw, dir.resolve("good.snap"), Codec.NONE));
    }

    Path write(byte[] bytes) throws IOException {
        Path p = dir.resolve("bad.snap");
        Files.write(p, bytes);
        return p;
    }

    /** Opening and fully checking {@code bytes} fails with a SnapshotFormatException whose message contains each of {@code expected}. */
    void rejected(byte[] bytes, String... expected) throws IOException {
        Path p = write(bytes);
        var thrown = assertThatThrownBy(() -> {
                    try (Snapshot s = Snapshot.open(p)) {
                        s.verifyDeep(2, b -> {});
                    }
                })
                .isInstanceOf(SnapshotFormatException.class)
                .hasMessageStartingWith(p.toString());
        for (String e : expected) thrown.hasMessageContaining(e);
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 7, 100, 4095, 4096, 5000})
    void truncatedBeforeTheDataEnds(int length) throws Exception {
        rejected(java.util.Arrays.copyOf(good, length), "truncated");
    }

    @Test
    void truncatedAnywhereAfterTheHeader() throws Exception {
        long[] m = Fixtures.manifestPlace(good);
        for (long cut : new long[] {good.length - 1, m[0] + 10, m[0], m[0] - 1, good.length / 2}) {
            rejected(java.util.Arrays.copyOf(good, (int) cut), "truncated");
        }
    }

    @Test
    void wrongMagic() throws Exception {
        byte[] b = good.clone();
        b[0] = 'X';
        rejected(b, "not a gmem snapshot", "wrong magic");
    }

    @Test
    void unknownVersion() throws Exception {
        byte[] b = good.clone();
        ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN).putInt(8, 3);
        Fixtures.fixChecksums(b);
        rejected(b, "unknown snapshot format version 3", "reads versions 1 and 2");
    }

    @Test
    void damagedHeaderAndManifestAreChecksumMismatches() throws Exception {
        byte[] h = good.clone();
        h[20] ^= 1; // manifest offset, header CRC left stale
        rejected(h, "checksum mismatch in the header");
        byte[] m = good.clone();
        m[(int) Fixtures.manifestPlace(good)[0] + 45] ^= 1;
        rejected(m, "checksum mismatch in the manifest");
    }

    @Test
    void chunkChecksumMismatchWritesNothing() throws Exception {
        byte[] b = good.clone();
        int chunkIndex;
        long offset;
        try (Snapshot s = Snapshot.open(dir.resolve("good.snap"))) {
            chunkIndex = s.chunks().size() - 1;
            while (s.chunks().get(chunkIndex).dataPages() == 0) chunkIndex--;
            offset = s.chunks().get(chunkIndex).offset();
        }
        b[(int) offset + 123] ^= 0x40;
        Path p = write(b);
        rejected(b, "chunk " + chunkIndex, "checksum mismatch", "stored at offset " + offset);
        for (GuestMemory.Backend backend : List.of(GuestMemory.Backend.MEMFD)) {
            try (Snapshot s = Snapshot.open(p);
                    Destination d = Destination.anonymous(backend, s.size())) {
                assertThatThrownBy(() ->
                                EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), x -> {}))
                        .isInstanceOf(SnapshotFormatException.class)
                        .hasMessageContaining("checksum mismatch");
                // not one page of guest memory was written
                try (HostMapping m = d.memory().map(0, s.size())) {
                    for (byte r : m.residency(0, s.size())) assertThat(r & 1).isZero();
                }
                assertThat(d.memory().populatedPages()).isZero();
            }
        }
        assertThatThrownBy(() -> {
                    try (Snapshot s = Snapshot.open(p)) {
                        SnapshotWriter.unpack(s, dir.resolve("out.raw"), 2, x -> {});
                    }
                })
                .hasMessageContaining("checksum mismatch");
        assertThat(Files.exists(dir.resolve("out.raw"))).isFalse();
        assertThat(dev.gmem.testing.Leaks.partials(dir)).isEmpty();
    }

    @Test
    void overlappingRegions() throws Exception {
        byte[] b =
                Fixtures.editManifest(twoRegions(), m -> m.putLong(40 + 32, 0x1000)); // region 1 starts inside region 0
        rejected(b, "regions overlap");
    }

    @Test
    void regionSizeNotAPageMultiple() throws Exception {
        rejected(
                Fixtures.editManifest(good, m -> m.putLong(40 + 8, SIZE - 100)),
                "region 0",
                "multiple of its page size");
    }

    @Test
    void regionPageSizeNotAPowerOfTwo() throws Exception {
        rejected(Fixtures.editManifest(good, m -> m.putLong(40 + 16, 12288)), "page size 12288");
    }

    @Test
    void regionFileOffsetThatContradictsTheLayout() throws Exception {
        rejected(
                Fixtures.editManifest(twoRegions(), m -> m.putLong(40 + 32 + 24, 4096)),
                "region 1 says file offset 4096");
    }

    @Test
    void chunkDataPastTheEnd() throws Exception {
        rejected(editFirstDataChunk(m -> m.putLong(16, good.length)), "runs past the end of the data area");
    }

    @Test
    void chunkOverlappingTheHeader() throws Exception {
        rejected(editFirstDataChunk(m -> m.putLong(16, 100)), "overlaps the header");
    }

    @Test
    void chunkRawLengthThatContradictsItsPages() throws Exception {
        rejected(editFirstDataChunk(m -> m.putInt(28, m.getInt(28) + 4096)), "raw length", "data pages");
    }

    @Test
    void chunkWithUnknownCodecOrRegion() throws Exception {
        rejected(editFirstDataChunk(m -> m.put(4, (byte) 9)), "unknown codec 9");
        rejected(editFirstDataChunk(m -> m.putInt(0, 5)), "region 5 does not exist");
    }

    @Test
    void chunkPagesBothDataAndZero() throws Exception {
        rejected(editFirstDataChunk(m -> m.putLong(72, m.getLong(40))), "both data and zero");
    }

    @Test
    void chunksOutOfOrder() throws Exception {
        rejected(
                Fixtures.editManifest(good, m -> {
                    int second = Fixtures.chunkEntry(m, 1);
                    m.putLong(second + 8, 0);
                }),
                "chunk 1",
                "out of order");
    }

    @Test
    void countsThatDoNotMatchTheManifestLength() throws Exception {
        rejected(Fixtures.editManifest(good, m -> m.putLong(24, Long.MAX_VALUE / 2)), "bytes, but the manifest has");
        rejected(Fixtures.editManifest(good, m -> m.putLong(32, 1)), "access-order");
    }

    @Test
    void accessOrderOutsideTheRegions() throws Exception {
        Path snap = dir.resolve("ordered.snap");
        try (RawImage image = RawImage.open(raw, null, 1, b -> {})) {
            SnapshotWriter.pack(image, snap, Codec.NONE, new long[] {4096}, b -> {});
        }
        byte[] b = Fixtures.bytes(snap);
        byte[] bad = Fixtures.editManifest(b, m -> m.putLong(m.limit() - 8, SIZE + 4096));
        rejected(bad, "access order entry 0", "not a page of any region");
    }

    @Test
    void malformedCompressedChunkWithAValidChecksum() throws Exception {
        Path zs = Fixtures.pack(raw, dir.resolve("z.snap"), Codec.ZSTD);
        byte[] b = Fixtures.bytes(zs);
        try (Snapshot s = Snapshot.open(zs)) {
            int i = 0;
            while (s.chunks().get(i).codec() != Codec.ZSTD) i++;
            Chunk c = s.chunks().get(i);
            int at = (int) c.offset();
            for (int k = 8; k < Math.min(40, c.storedLength()); k++) b[at + k] ^= 0x5a;
            int crc = SnapshotFormat.crc(ByteBuffer.wrap(b, at, c.storedLength()));
            int entry = Fixtures.chunkEntry(
                    ByteBuffer.wrap(b, (int) Fixtures.manifestPlace(b)[0], (int) Fixtures.manifestPlace(b)[1])
                            .slice()
                            .order(java.nio.ByteOrder.LITTLE_ENDIAN),
                    i);
            ByteBuffer.wrap(b)
                    .order(java.nio.ByteOrder.LITTLE_ENDIAN)
                    .putInt((int) Fixtures.manifestPlace(b)[0] + entry + 32, crc);
            Fixtures.fixChecksums(b);
            rejected(b, "chunk " + i, "zstd");
        }
    }

    @Test
    void rawFileWhoseSizeContradictsTheRegions() throws Exception {
        assertThatThrownBy(() -> RawImage.open(raw, Region.parse("0:2M", 4096), 1, b -> {}))
                .isInstanceOf(SnapshotFormatException.class)
                .hasMessageContaining(raw.toString())
                .hasMessageContaining("is " + SIZE + " bytes, but its regions add up to " + (2 << 20));
        Path odd = dir.resolve("odd.mem");
        Files.write(odd, new byte[5000]);
        assertThatThrownBy(() -> RawImage.open(odd, null, 1, b -> {})).hasMessageContaining("multiple of 4096");
        assertThatThrownBy(() -> PageSources.open(dir.resolve("good.snap"), Region.parse("0:4M", 4096), 1, b -> {}))
                .hasMessageContaining("records its own regions");
        assertThatThrownBy(() -> Snapshot.open(dir.resolve("missing"))).hasMessageContaining("no such file");
        assertThatThrownBy(() -> Snapshot.open(dir)).hasMessageContaining("is a directory");
    }

    @Test
    void aRestoreThatFailsMidwayLeavesNoExport() throws Exception {
        Path shm = Files.createTempDirectory(Path.of("/dev/shm"), "gmem-test");
        try (Snapshot s = Snapshot.open(dir.resolve("good.snap"))) {
            PageSource failing = new FailingSource(s, 3);
            Path target = shm.resolve("guest.mem");
            assertThatThrownBy(() -> {
                        try (Destination d = Destination.export(target, s.size())) {
                            EagerRestore.restore(
                                    failing, d.memory(), new EagerRestore.Options(null, 1, false), x -> {});
                            d.commit();
                        }
                    })
                    .isInstanceOf(IOException.class)
                    .hasMessageContaining("EIO");
            try (var files = Files.list(shm)) {
                assertThat(files.toList()).isEmpty();
            }
        } finally {
            Files.delete(shm);
        }
    }

    /** A real snapshot whose reads fail with a real EIO from the kernel after {@code after} chunks. */
    static final class FailingSource implements PageSource {
        private final Snapshot delegate;
        private final int after;
        private final java.util.concurrent.atomic.AtomicInteger reads = new java.util.concurrent.atomic.AtomicInteger();

        FailingSource(Snapshot delegate, int after) {
            this.delegate = delegate;
            this.after = after;
        }

        @Override
        public ChunkData read(int index, MemorySegment scratch) throws IOException {
            if (reads.incrementAndGet() > after) {
                // a read of a directory descriptor: the kernel's own error (EISDIR), standing in for a failing disk
                try (Fd d = Fd.open(Path.of("/"), Linux.O_RDONLY | Linux.O_CLOEXEC, 0)) {
                    d.pread(scratch.asSlice(0, 16), 0);
                } catch (dev.gmem.linux.SyscallException e) {
                    throw new IOException("reading chunk " + index + ": EIO (" + e.getMessage() + ")", e);
                }
            }
            return delegate.read(index, scratch);
        }

        @Override
        public Path path() {
            return delegate.path();
        }

        @Override
        public String format() {
            return delegate.format();
        }

        @Override
        public List<Region> regions() {
            return delegate.regions();
        }

        @Override
        public List<Chunk> chunks() {
            return delegate.chunks();
        }

        @Override
        public long[] accessOrder() {
            return delegate.accessOrder();
        }

        @Override
        public long scratchBytes() {
            return Math.max(4096, delegate.scratchBytes());
        }

        @Override
        public void verify(int threads, LongConsumer progress) throws IOException {
            delegate.verify(threads, progress);
        }

        @Override
        public void close() {}
    }

    byte[] twoRegions() throws Exception {
        Path snap = dir.resolve("two.snap");
        try (RawImage image = RawImage.open(raw, Region.parse("0:1M,0x100000000:3M", 4096), 1, b -> {})) {
            SnapshotWriter.pack(image, snap, Codec.NONE, new long[0], b -> {});
        }
        return Fixtures.bytes(snap);
    }

    byte[] editFirstDataChunk(Consumer<ByteBuffer> edit) throws Exception {
        int index;
        try (Snapshot s = Snapshot.open(dir.resolve("good.snap"))) {
            index = 0;
            while (s.chunks().get(index).dataPages() == 0) index++;
        }
        int i = index;
        return Fixtures.editManifest(good, m -> {
            int at = Fixtures.chunkEntry(m, i);
            edit.accept(m.slice(at, SnapshotFormat.CHUNK_ENTRY_BYTES).order(java.nio.ByteOrder.LITTLE_ENDIAN));
        });
    }
}
