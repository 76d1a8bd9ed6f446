package dev.gmem.memory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Poller;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.probe.Check;
import dev.gmem.testing.Leaks;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdMessages;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicLong;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayNameGeneration;
import org.junit.jupiter.api.Test;

/**
 * The guest memory contract, run once per backend (see the subclasses). It ports the behaviours
 * that the kernel work's selftests check: the write() sequence, fallocate, mmap, the in-place
 * conversion tests, the flag tests and userfaultfd MISSING and MINOR. A test of a feature the
 * backend lacks on this host is skipped with the probe's reason.
 */
@DisplayNameGeneration(BackendDisplayNames.class)
abstract class GuestMemoryConformance {
    static final long P = Posix.pageSize();
    static final long SHARED = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);
    static final long MMAP_ONLY = GuestMemfdFlag.MMAP.bit();

    private final List<GuestMemory> opened = new ArrayList<>();
    private Arena arena;
    /** Threads of this test alone (threads blocked in faults must not starve a shared pool). */
    private ExecutorService threads;

    abstract GuestMemory.Backend backend();

    /** Skips the whole class where the backend cannot exist on this host. */
    abstract void assumeBackend();

    @BeforeEach
    void setUp() {
        assumeBackend();
        arena = Arena.ofShared();
        threads = Executors.newCachedThreadPool();
    }

    @AfterEach
    void tearDown() throws Exception {
        if (threads != null) {
            threads.shutdownNow();
            threads.awaitTermination(10, TimeUnit.SECONDS);
        }
        for (GuestMemory m : opened) m.close();
        if (arena != null) arena.close();
    }

    GuestMemory create(long size, long flags) throws IOException {
        GuestMemory m = GuestMemories.create(backend(), size, flags);
        opened.add(m);
        return m;
    }

    MemorySegment filled(long length, int value) {
        MemorySegment s = arena.allocate(length, P);
        s.fill((byte) value);
        return s;
    }

    static void assertErrno(Errno expected, ThrowingCallable call) {
        assertThatThrownBy(call)
                .isInstanceOfSatisfying(
                        SyscallException.class, e -> assertThat(e.errno()).contains(expected));
    }

    static void assumeAvailable(Check check) {
        assumeTrue(check.available(), check.reason());
    }

    static void assumeConversion(GuestMemory m) {
        assumeAvailable(m.capabilities().conversion());
    }

    static void assumeUserfaultfd(GuestMemory m) {
        assumeAvailable(m.capabilities().userfaultfd());
    }

    static byte byteAt(HostMapping hm, long offset) throws PrivateMemoryException {
        return hm.getByte(offset);
    }

    /** Reads one byte through {@code hm} on a thread of this test, which may block in a fault. */
    CompletableFuture<Byte> readAsync(HostMapping hm, long offset) {
        return CompletableFuture.supplyAsync(
                () -> {
                    try {
                        return hm.getByte(offset);
                    } catch (PrivateMemoryException e) {
                        throw new RuntimeException(e);
                    }
                },
                threads);
    }

    // ---------------------------------------------------------------- creation and flags

    @Test
    void createRejectsBadSizes() {
        for (long size : new long[] {0, 1, P - 1, P + 1, -P, Long.MIN_VALUE}) {
            assertErrno(Errno.EINVAL, () -> create(size, SHARED));
        }
    }

    @Test
    void createAcceptsKnownFlagsAndRejectsTheRest() throws Exception {
        for (long flags : new long[] {0, MMAP_ONLY, SHARED}) {
            assertThat(create(4 * P, flags).flags()).isEqualTo(flags);
        }
        for (int bit = 2; bit < 64; bit++) {
            long flag = 1L << bit;
            assertErrno(Errno.EINVAL, () -> create(4 * P, flag));
        }
    }

    @Test
    void aHugeFileCostsNothingUntilUsed() throws Exception {
        GuestMemory m = create(1L << 40, SHARED);
        assertThat(m.size()).isEqualTo(1L << 40);
        assertThat(m.write((1L << 40) - P, filled(P, 7))).isEqualTo(P);
        assertThat(m.populatedPages()).isEqualTo(1);
    }

    @Test
    void withoutMmapEveryMappingIsRefused() throws Exception {
        GuestMemory m = create(4 * P, 0);
        assertErrno(Errno.ENODEV, () -> m.map(0, P));
        GuestMemory initSharedOnly = create(4 * P, GuestMemfdFlag.INIT_SHARED.bit());
        assertErrno(Errno.ENODEV, () -> initSharedOnly.map(0, P));
    }

    // ---------------------------------------------------------------- write() population (v5)

    @Test
    void writeChecksItsArguments() throws Exception {
        GuestMemory m = create(8 * P, SHARED);
        MemorySegment page = filled(2 * P, 1);
        assertErrno(Errno.EINVAL, () -> m.write(1, page.asSlice(0, P)));
        assertErrno(Errno.EINVAL, () -> m.write(0, page.asSlice(0, 1)));
        assertErrno(Errno.EINVAL, () -> m.write(0, page.asSlice(0, P - 1)));
        assertErrno(Errno.EINVAL, () -> m.write(0, page.asSlice(0, P + 1)));
        assertErrno(Errno.EINVAL, () -> m.write(8 * P, page.asSlice(0, P)));
        assertErrno(Errno.EINVAL, () -> m.write(7 * P, page));
        assertErrno(Errno.EINVAL, () -> m.write(-P, page.asSlice(0, P)));
        assertThat(m.write(0, page.asSlice(0, 0))).isZero();
        assertThat(m.populatedPages()).isZero();
        assertErrno(Errno.EINVAL, () -> m.read(0, page));
    }

    @Test
    void writePopulatesWhatTheMappingShows() throws Exception {
        GuestMemory m = create(8 * P, SHARED);
        MemorySegment data = arena.allocate(3 * P, P);
        for (long i = 0; i < data.byteSize(); i++) data.set(ValueLayout.JAVA_BYTE, i, (byte) (i * 31 + 7));
        assertThat(m.write(2 * P, data)).isEqualTo(3 * P);
        for (long p = 0; p < 8; p++)
            assertThat(m.isPopulated(p * P)).as("page %d", p).isEqualTo(p >= 2 && p < 5);
        try (HostMapping hm = m.map(0, 8 * P)) {
            MemorySegment back = arena.allocate(3 * P);
            hm.read(2 * P, back);
            assertThat(back.mismatch(data)).isEqualTo(-1);
            assertThat(hm.getLong(0)).isZero();
        }
        assertThat(m.isPopulated(0))
                .as("reading a page through a mapping populates it")
                .isTrue();
    }

    @Test
    void writeTwiceGivesEnospc() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertThat(m.write(P, filled(P, 1))).isEqualTo(P);
        assertThatThrownBy(() -> m.write(P, filled(P, 2))).isInstanceOfSatisfying(SyscallException.class, e -> {
            assertThat(e.errno()).contains(Errno.ENOSPC);
            assertThat(e.getMessage()).contains("already populated");
        });
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThat(byteAt(hm, P)).as("the first write's bytes stay").isEqualTo((byte) 1);
        }
    }

    @Test
    void writeStopsAtTheFirstPopulatedPage() throws Exception {
        GuestMemory m = create(8 * P, SHARED);
        m.write(3 * P, filled(P, 9));
        assertThat(m.write(P, filled(4 * P, 5))).isEqualTo(2 * P);
        assertThat(m.isPopulated(P)).isTrue();
        assertThat(m.isPopulated(2 * P)).isTrue();
        assertThat(m.isPopulated(4 * P)).isFalse();
        assertThat(m.write(4 * P, filled(P, 6))).isEqualTo(P);
        try (HostMapping hm = m.map(0, 8 * P)) {
            assertThat(byteAt(hm, 2 * P)).isEqualTo((byte) 5);
            assertThat(byteAt(hm, 3 * P)).isEqualTo((byte) 9);
            assertThat(byteAt(hm, 4 * P)).isEqualTo((byte) 6);
        }
    }

    @Test
    void punchThenWriteAgain() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        m.write(0, filled(2 * P, 3));
        m.punchHole(0, P);
        assertThat(m.isPopulated(0)).isFalse();
        assertThat(m.isPopulated(P)).isTrue();
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThat(hm.getLong(P)).isNotZero();
        }
        assertThat(m.write(0, filled(P, 4))).isEqualTo(P);
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThat(byteAt(hm, 0)).isEqualTo((byte) 4);
        }
    }

    @Test
    void preallocatedPagesCanBeWritten() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        m.allocate(0, 4 * P);
        assertThat(m.isPopulated(0)).isFalse();
        assertThat(m.write(0, filled(4 * P, 8))).isEqualTo(4 * P);
        assertErrno(Errno.ENOSPC, () -> m.write(0, filled(P, 8)));
    }

    @Test
    void aPageTouchedThroughAMappingIsPopulated() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThat(hm.getLong(2 * P)).isZero();
        }
        assertThat(m.isPopulated(2 * P)).isTrue();
        assertErrno(Errno.ENOSPC, () -> m.write(2 * P, filled(P, 1)));
        assertThat(m.write(0, filled(4 * P, 1)))
                .as("a write stops at the touched page")
                .isEqualTo(2 * P);
    }

    @Test
    void anUnreadableSourceGivesEfaultAndPopulatesNothing() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        try (Mapping source = Mapping.anonymous(2 * P)) {
            source.protect(0, 2 * P, Linux.PROT_NONE);
            assertErrno(Errno.EFAULT, () -> m.write(0, source.segment()));
        }
        assertThat(m.isPopulated(0)).isFalse();
        assertThat(m.isPopulated(P)).isFalse();
        assertThat(m.write(0, filled(P, 2))).isEqualTo(P);
    }

    @Test
    void aPartlyReadableSourceGivesAShortWrite() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        try (Mapping source = Mapping.anonymous(3 * P)) {
            source.segment().fill((byte) 0x77);
            source.protect(2 * P, P, Linux.PROT_NONE);
            assertThat(m.write(0, source.segment())).isEqualTo(2 * P);
        }
        assertThat(m.isPopulated(P)).isTrue();
        assertThat(m.isPopulated(2 * P)).as("the page the copy stopped at").isFalse();
        assertThat(m.write(2 * P, filled(P, 1))).isEqualTo(P);
    }

    @Test
    void aShortCopyZeroFillsItsPageAndPopulatesIt() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        try (Mapping source = Mapping.anonymous(3 * P)) {
            source.segment().fill((byte) 0x66);
            source.protect(2 * P, P, Linux.PROT_NONE);
            // The source starts half a page in, so the copy stops half-way through the second page.
            MemorySegment shifted = source.segment().asSlice(P / 2, 2 * P);
            assertThat(m.write(0, shifted)).isEqualTo(P + P / 2);
        }
        assertThat(m.isPopulated(P)).isTrue();
        assertErrno(Errno.ENOSPC, () -> m.write(P, filled(P, 1)));
        try (HostMapping hm = m.map(0, 2 * P)) {
            assertThat(byteAt(hm, P + P / 2 - 1)).isEqualTo((byte) 0x66);
            assertThat(byteAt(hm, P + P / 2)).as("the rest of the page is zero").isZero();
            assertThat(byteAt(hm, 2 * P - 1)).isZero();
        }
    }

    /** Many writers race over the same pages: each page is populated by exactly one of them. */
    @Test
    void concurrentWritersPopulateEachPageOnce() throws Exception {
        int pages = 512;
        int threads = 8;
        GuestMemory m = create(pages * P, SHARED);
        AtomicIntegerArray owner = new AtomicIntegerArray(pages);
        CyclicBarrier start = new CyclicBarrier(threads);
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<Long>> results = new ArrayList<>();
            for (int t = 1; t <= threads; t++) {
                int id = t;
                MemorySegment source = filled(64 * P, id);
                results.add(pool.submit(() -> {
                    Random random = new Random(id);
                    long written = 0;
                    start.await();
                    for (int i = 0; i < 400; i++) {
                        int first = random.nextInt(pages);
                        int count = 1 + random.nextInt(Math.min(64, pages - first));
                        try {
                            long n = m.write(first * P, source.asSlice(0, count * P));
                            for (long p = first; p < first + n / P; p++) {
                                assertThat(owner.compareAndSet((int) p, 0, id))
                                        .as("page %d populated twice", p)
                                        .isTrue();
                            }
                            written += n;
                        } catch (SyscallException e) {
                            assertThat(e.errno()).contains(Errno.ENOSPC);
                        }
                    }
                    return written;
                }));
            }
            long total = 0;
            for (Future<Long> f : results) total += f.get(60, TimeUnit.SECONDS);
            long owned = 0;
            try (HostMapping hm = m.map(0, pages * P)) {
                for (int p = 0; p < pages; p++) {
                    int id = owner.get(p);
                    if (id == 0) continue;
                    owned++;
                    assertThat(byteAt(hm, p * P)).isEqualTo((byte) id);
                    assertThat(byteAt(hm, p * P + P - 1)).isEqualTo((byte) id);
                }
            }
            assertThat(total).isEqualTo(owned * P);
            assertThat(m.populatedPages()).isEqualTo(owned);
        } finally {
            pool.shutdownNow();
        }
    }

    // ---------------------------------------------------------------- fallocate

    @Test
    void fallocateNeedsKeepSizeAndNoOtherMode() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertErrno(Errno.EOPNOTSUPP, () -> m.fallocate(0, 0, P));
        assertErrno(Errno.EOPNOTSUPP, () -> m.fallocate(Linux.FALLOC_FL_PUNCH_HOLE, 0, P));
        assertErrno(Errno.EOPNOTSUPP, () -> m.fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_ZERO_RANGE, 0, P));
        assertErrno(
                Errno.EOPNOTSUPP, () -> m.fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_COLLAPSE_RANGE, 0, P));
    }

    /** The selftest's invalid punch-hole list, and the same offsets for allocation. */
    @Test
    void unalignedFallocateGivesEinval() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        long[][] cases = {
            {0, 1}, {0, P - 1}, {0, P + 1}, {1, 1}, {1, P - 1}, {1, P}, {1, P + 1}, {P, 1}, {P, P - 1}, {P, P + 1}
        };
        for (long[] c : cases) {
            assertErrno(Errno.EINVAL, () -> m.punchHole(c[0], c[1]));
            assertErrno(Errno.EINVAL, () -> m.allocate(c[0], c[1]));
        }
    }

    @Test
    void allocationMustFitAndPunchingPastTheEndIsANoOp() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertErrno(Errno.EINVAL, () -> m.allocate(3 * P, 2 * P));
        assertErrno(Errno.EINVAL, () -> m.allocate(4 * P, P));
        m.allocate(0, 4 * P);
        m.punchHole(4 * P, 4 * P);
        m.punchHole(2 * P, 8 * P);
        m.allocate(2 * P, 2 * P);
        m.punchHole(0, 4 * P);
        m.allocate(0, 4 * P);
    }

    @Test
    void anOverflowingRangeGivesEfbig() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertErrno(Errno.EFBIG, () -> m.punchHole(P, Long.MAX_VALUE - P / 2 & -P));
        assertErrno(Errno.EFBIG, () -> m.allocate(P, Long.MAX_VALUE - P / 2 & -P));
    }

    @Test
    void theSizeIsFixed() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertThatThrownBy(() -> m.fd().truncate(2 * P)).isInstanceOf(SyscallException.class);
        assertThatThrownBy(() -> m.fd().truncate(8 * P)).isInstanceOf(SyscallException.class);
    }

    @Test
    void aPunchedPageReadsZeroAndItsNeighboursKeepTheirBytes() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        m.write(0, filled(4 * P, 0x5a));
        try (HostMapping hm = m.map(0, 4 * P)) {
            m.punchHole(P, P);
            assertThat(hm.getLong(P)).isZero();
            assertThat(hm.getLong(P + P - 8)).isZero();
            assertThat(byteAt(hm, 0)).isEqualTo((byte) 0x5a);
            assertThat(byteAt(hm, 2 * P)).isEqualTo((byte) 0x5a);
        }
    }

    // ---------------------------------------------------------------- mappings

    @Test
    void mappingsAreCheckedAndShareTheFile() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertErrno(Errno.EINVAL, () -> m.map(1, P));
        assertErrno(Errno.EINVAL, () -> m.map(0, 0));
        assertErrno(Errno.EINVAL, () -> m.map(0, 5 * P));
        assertErrno(Errno.EINVAL, () -> m.map(4 * P, P));
        try (HostMapping a = m.map(0, 4 * P);
                HostMapping b = m.map(2 * P, 2 * P)) {
            assertThat(a.getLong(3 * P)).as("INIT_SHARED pages start zeroed").isZero();
            a.setLong(3 * P, 0x1234L);
            assertThat(b.getLong(P)).isEqualTo(0x1234L);
            assertThat(m.guestView().get(ValueLayout.JAVA_LONG, 3 * P)).isEqualTo(0x1234L);
            assertThatThrownBy(() -> a.getLong(4 * P)).isInstanceOf(IndexOutOfBoundsException.class);
        }
    }

    @Test
    void closingReleasesDescriptorsAndMappings() throws Exception {
        GuestMemory warm = GuestMemories.create(backend(), 4 * P, SHARED);
        warm.close();
        Leaks.Fds fds = Leaks.fds();
        GuestMemory m = GuestMemories.create(backend(), 4 * P, SHARED);
        HostMapping hm = m.map(0, 4 * P);
        long address = hm.address(0);
        m.write(0, filled(P, 1));
        m.guestView();
        m.close();
        assertThat(Leaks.isMapped(address)).isFalse();
        assertThat(fds.opened()).isEmpty();
        assertThatThrownBy(() -> m.write(P, filled(P, 1))).isInstanceOf(IllegalStateException.class);
    }

    // ---------------------------------------------------------------- attributes and conversion

    @Test
    void initialAttributesFollowInitShared() throws Exception {
        GuestMemory shared = create(2 * P, SHARED);
        assertThat(shared.isPrivate(0)).isFalse();
        GuestMemory priv = create(2 * P, MMAP_ONLY);
        assertThat(priv.isPrivate(0)).isTrue();
        try (HostMapping hm = priv.map(0, 2 * P)) {
            assertThatThrownBy(() -> hm.getLong(P))
                    .isInstanceOfSatisfying(
                            PrivateMemoryException.class,
                            e -> assertThat(e.offset()).isEqualTo(P));
            assertThat(Posix.readablePrefix(hm.segment()))
                    .as("private pages are inaccessible in the raw mapping")
                    .isZero();
        }
        assertThatThrownBy(() -> priv.pin(0, P)).isInstanceOf(PrivateMemoryException.class);
    }

    @Test
    void setAttributesChecksItsArgumentsAndReturnsAtOnceWhenNothingChanges() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assertErrno(Errno.EINVAL, () -> m.setAttributes(0, P, 1));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(0, 0, GuestMemory.PRIVATE));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(1, P, GuestMemory.PRIVATE));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(0, P + 1, GuestMemory.PRIVATE));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(4 * P, P, GuestMemory.PRIVATE));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(3 * P, 2 * P, GuestMemory.PRIVATE));
        assertErrno(Errno.EINVAL, () -> m.setAttributes(P, Long.MAX_VALUE - P / 2, GuestMemory.PRIVATE));
        m.setAttributes(0, 4 * P, 0); // already shared: nothing to do, on every backend
        assertThat(m.isPrivate(0)).isFalse();
    }

    @Test
    void singlePageConversionKeepsTheContents() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        m.write(0, filled(4 * P, 0x3c));
        try (HostMapping hm = m.map(0, 4 * P)) {
            m.setAttributes(P, P, GuestMemory.PRIVATE);
            assertThat(m.isPrivate(P)).isTrue();
            assertThatThrownBy(() -> hm.getByte(P + 5))
                    .isInstanceOfSatisfying(
                            PrivateMemoryException.class,
                            e -> assertThat(e.offset()).isEqualTo(P + 5));
            assertThat(m.guestView().get(ValueLayout.JAVA_BYTE, P + 5))
                    .as("the guest reaches private pages")
                    .isEqualTo((byte) 0x3c);
            m.setAttributes(P, P, 0);
            assertThat(byteAt(hm, P + 5)).isEqualTo((byte) 0x3c);
        }
    }

    /** The selftest's "indexing": four pages, one converted, the neighbours untouched. */
    @Test
    void conversionIsPagePrecise() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        try (HostMapping hm = m.map(0, 4 * P)) {
            m.setAttributes(2 * P, P, GuestMemory.PRIVATE);
            assertThat(new boolean[] {m.isPrivate(0), m.isPrivate(P), m.isPrivate(2 * P), m.isPrivate(3 * P)})
                    .containsExactly(false, false, true, false);
            hm.setLong(P + P - 8, 1);
            hm.setLong(3 * P, 1);
            assertThat(Posix.readablePrefix(hm.segment())).isEqualTo(2 * P);
            assertThatThrownBy(() -> hm.read(P, arena.allocate(2 * P)))
                    .isInstanceOfSatisfying(
                            PrivateMemoryException.class,
                            e -> assertThat(e.offset()).isEqualTo(2 * P));
        }
    }

    @Test
    void everyMappingSeesANewStateAtOnce() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        try (HostMapping a = m.map(0, 4 * P);
                HostMapping b = m.map(P, 2 * P)) {
            m.setAttributes(P, 2 * P, GuestMemory.PRIVATE);
            assertThat(Posix.readablePrefix(a.segment())).isEqualTo(P);
            assertThat(Posix.readablePrefix(b.segment())).isZero();
            try (HostMapping c = m.map(0, 4 * P)) {
                assertThat(Posix.readablePrefix(c.segment()))
                        .as("a new mapping starts with the state")
                        .isEqualTo(P);
            }
            m.setAttributes(P, P, 0);
            assertThat(Posix.readablePrefix(a.segment())).isEqualTo(2 * P);
            assertThat(Posix.readablePrefix(b.segment())).isEqualTo(P);
        }
    }

    @Test
    void conversionBeforeAllocationHoldsAtFirstUse() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        m.setAttributes(0, 2 * P, GuestMemory.PRIVATE);
        assertThat(m.isPopulated(0)).isFalse();
        assertThat(m.write(0, filled(P, 0x11))).isEqualTo(P);
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThatThrownBy(() -> hm.getByte(0)).isInstanceOf(PrivateMemoryException.class);
            m.setAttributes(0, 2 * P, 0);
            assertThat(byteAt(hm, 0)).isEqualTo((byte) 0x11);
            assertThat(byteAt(hm, P)).isZero();
        }
    }

    /** Conversion both ways over pages in every allocation state keeps what each page holds. */
    @Test
    void conversionKeepsContentsInEveryAllocationLayout() throws Exception {
        GuestMemory m = create(8 * P, SHARED);
        assumeConversion(m);
        m.allocate(P, P); // page 1: fallocated
        m.write(2 * P, filled(P, 0x22)); // page 2: written
        try (HostMapping hm = m.map(0, 8 * P)) {
            hm.setByte(3 * P, (byte) 0x33); // page 3: touched; pages 0 and 4..7 never used
            m.setAttributes(0, 8 * P, GuestMemory.PRIVATE);
            m.setAttributes(0, 8 * P, 0);
            assertThat(byteAt(hm, 0)).isZero();
            assertThat(byteAt(hm, P)).isZero();
            assertThat(byteAt(hm, 2 * P)).isEqualTo((byte) 0x22);
            assertThat(byteAt(hm, 3 * P)).isEqualTo((byte) 0x33);
        }
    }

    @Test
    void punchingKeepsAttributes() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        m.write(0, filled(4 * P, 1));
        m.setAttributes(P, P, GuestMemory.PRIVATE);
        m.punchHole(0, 4 * P);
        assertThat(m.isPrivate(P)).isTrue();
        assertThat(m.isPrivate(0)).isFalse();
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThat(hm.getLong(0))
                    .as("shared memory reads zero after punching")
                    .isZero();
            assertThatThrownBy(() -> hm.getLong(P)).isInstanceOf(PrivateMemoryException.class);
        }
    }

    /** The selftest's elevated refcount: a pinned page makes the conversion busy, naming it; unpinned, it succeeds. */
    @Test
    void aPinnedPageMakesConversionBusyUntilUnpinned() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeConversion(m);
        Pin pin = m.pin(2 * P, P);
        assertThatThrownBy(() -> m.setAttributes(0, 4 * P, GuestMemory.PRIVATE))
                .isInstanceOfSatisfying(ConversionBusyException.class, e -> {
                    assertThat(e.offset()).isEqualTo(2 * P);
                    assertThat(e.errno()).contains(Errno.EAGAIN);
                });
        assertThatThrownBy(() -> m.setAttributes(2 * P, P, GuestMemory.PRIVATE))
                .isInstanceOfSatisfying(
                        ConversionBusyException.class,
                        e -> assertThat(e.offset()).isEqualTo(2 * P));
        assertThat(m.isPrivate(0)).as("a busy conversion changes nothing").isFalse();
        m.setAttributes(3 * P, P, GuestMemory.PRIVATE); // the neighbour is not pinned
        pin.close();
        pin.close();
        m.setAttributes(0, 4 * P, GuestMemory.PRIVATE);
        assertThat(m.isPrivate(2 * P)).isTrue();
    }

    /** Checked accesses race with conversions: each either succeeds or is refused, and the process survives. */
    @Test
    void checkedAccessesRaceSafelyWithConversions() throws Exception {
        GuestMemory m = create(16 * P, SHARED);
        assumeConversion(m);
        m.write(0, filled(16 * P, 0x44));
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong reads = new AtomicLong();
        AtomicLong refused = new AtomicLong();
        try (HostMapping hm = m.map(0, 16 * P)) {
            List<CompletableFuture<Void>> readers = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int seed = t;
                readers.add(CompletableFuture.runAsync(
                        () -> {
                            Random r = new Random(seed);
                            while (!stop.get()) {
                                try {
                                    assertThat(hm.getByte(r.nextInt(16) * P + r.nextInt((int) P)))
                                            .isEqualTo((byte) 0x44);
                                    reads.incrementAndGet();
                                } catch (PrivateMemoryException e) {
                                    refused.incrementAndGet();
                                }
                            }
                        },
                        threads));
            }
            Random r = new Random(99);
            for (int i = 0; i < 2000; i++) {
                long p = r.nextInt(16) * P;
                m.setAttributes(p, P, r.nextBoolean() ? GuestMemory.PRIVATE : 0);
            }
            stop.set(true);
            for (CompletableFuture<Void> f : readers) f.get(30, TimeUnit.SECONDS);
        }
        assertThat(reads.get()).isPositive();
        assertThat(refused.get()).isPositive();
    }

    /** Mappings opened and closed while conversions run: conversions never touch a closed mapping. */
    @Test
    void mappingsComeAndGoDuringConversions() throws Exception {
        GuestMemory m = create(16 * P, SHARED);
        assumeConversion(m);
        AtomicBoolean stop = new AtomicBoolean();
        CompletableFuture<Void> churn = CompletableFuture.runAsync(
                () -> {
                    try {
                        while (!stop.get()) {
                            try (HostMapping hm = m.map(0, 16 * P)) {
                                long readable = Posix.readablePrefix(hm.segment());
                                assertThat(readable % P).isZero();
                            }
                        }
                    } catch (IOException e) {
                        throw new RuntimeException(e);
                    }
                },
                threads);
        Random r = new Random(5);
        for (int i = 0; i < 1000; i++) m.setAttributes(r.nextInt(16) * P, P, r.nextBoolean() ? GuestMemory.PRIVATE : 0);
        stop.set(true);
        churn.get(30, TimeUnit.SECONDS);
    }

    // ---------------------------------------------------------------- userfaultfd

    @Test
    void userfaultfdNeedsInitShared() throws Exception {
        GuestMemory m = create(4 * P, MMAP_ONLY);
        assumeUserfaultfd(m);
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertErrno(
                    Errno.EINVAL,
                    () -> m.registerUserfaultfd(hm, UffdAbi.REGISTER_MODE_MISSING, 0)
                            .close());
        }
        GuestMemory shared = create(4 * P, SHARED);
        try (HostMapping hm = shared.map(0, 4 * P)) {
            assertErrno(Errno.EINVAL, () -> shared.registerUserfaultfd(hm, 0, 0).close());
            assertErrno(
                    Errno.EINVAL,
                    () -> shared.registerUserfaultfd(hm, UffdAbi.REGISTER_MODE_WP, 0)
                            .close());
        }
    }

    /** Waits for one fault on {@code reg} and returns its file offset and flags. */
    static long[] nextFault(UffdRegistration reg, MemorySegment buffer) throws IOException {
        Poller poller = new Poller(Linux.POLLIN, reg.userfaultfd().fd());
        while (true) {
            assertThat(poller.poll(10_000)).as("a fault within 10 s").isEqualTo(1);
            if (reg.userfaultfd().read(buffer) == 0) continue;
            assertThat(UffdMessages.event(buffer, 0)).isEqualTo(UffdAbi.EVENT_PAGEFAULT);
            return new long[] {
                reg.fileOffsetOf(UffdMessages.faultAddress(buffer, 0)), UffdMessages.faultFlags(buffer, 0)
            };
        }
    }

    @Test
    void missingFaultsAreServedByCopyAndStayPopulateOnce() throws Exception {
        GuestMemory m = create(8 * P, SHARED);
        assumeUserfaultfd(m);
        MemorySegment events = arena.allocate(UffdAbi.MSG.byteSize() * 8);
        try (HostMapping hm = m.map(0, 8 * P);
                UffdRegistration reg = m.registerUserfaultfd(hm, UffdAbi.REGISTER_MODE_MISSING, 0)) {
            CompletableFuture<Byte> reader = readAsync(hm, 5 * P + 3);
            long[] fault = nextFault(reg, events);
            assertThat(fault[0]).isEqualTo(5 * P);
            assertThat(fault[1] & UffdAbi.PAGEFAULT_FLAG_MINOR).isZero();
            assertThat(reg.copy(5 * P, filled(P, 0xab), P)).isEqualTo(P);
            assertThat(reader.get(10, TimeUnit.SECONDS)).isEqualTo((byte) 0xab);
            assertThat(m.isPopulated(5 * P)).isTrue();
            assertErrno(Errno.ENOSPC, () -> m.write(5 * P, filled(P, 1)));
            assertThat(reg.copy(5 * P, filled(P, 1), P)).isEqualTo(Userfaultfd.EXISTS);
            m.write(6 * P, filled(P, 0x66));
            assertThat(reg.copy(6 * P, filled(P, 1), P))
                    .as("COPY onto a written page")
                    .isEqualTo(Userfaultfd.EXISTS);
            assertThat(reg.zero(P, P)).isEqualTo(P);
            assertThat(byteAt(hm, P)).isZero();
            assertErrno(Errno.ENOSPC, () -> m.write(P, filled(P, 1)));
            assertThat(m.populatedPages()).isEqualTo(3);
        }
    }

    @Test
    void minorFaultsAreServedByContinueAfterAWrite() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        assumeUserfaultfd(m);
        MemorySegment events = arena.allocate(UffdAbi.MSG.byteSize() * 8);
        long modes = UffdAbi.REGISTER_MODE_MISSING | UffdAbi.REGISTER_MODE_MINOR;
        try (HostMapping hm = m.map(0, 4 * P);
                UffdRegistration reg = m.registerUserfaultfd(hm, modes, 0)) {
            assertThat(reg.continueAt(2 * P, P))
                    .as("CONTINUE where the file holds no page")
                    .isEqualTo(Userfaultfd.NO_PAGE);
            m.write(2 * P, filled(P, 0xcd));
            CompletableFuture<Byte> reader = readAsync(hm, 2 * P + 100);
            long[] fault = nextFault(reg, events);
            assertThat(fault[0]).isEqualTo(2 * P);
            assertThat(fault[1] & UffdAbi.PAGEFAULT_FLAG_MINOR)
                    .as("the page exists: a minor fault")
                    .isNotZero();
            assertThat(reg.continueAt(2 * P, P)).isEqualTo(P);
            assertThat(reader.get(10, TimeUnit.SECONDS)).isEqualTo((byte) 0xcd);
        }
    }

    /**
     * The restore race: readers fault on random pages while a handler serves faults with COPY and a
     * writer populates every page with write(). Each page is populated once (the two paths' counts
     * add up to the file), and every reader sees the right bytes.
     */
    @Test
    void faultResolutionAndWritersRaceWithoutDoublePopulation() throws Exception {
        int pages = 256;
        GuestMemory m = create(pages * P, SHARED);
        assumeUserfaultfd(m);
        MemorySegment source = arena.allocate(pages * P, P);
        for (int p = 0; p < pages; p++) source.asSlice(p * P, P).fill((byte) (p * 7 + 1));
        AtomicLong byCopy = new AtomicLong();
        AtomicLong byWrite = new AtomicLong();
        AtomicBoolean done = new AtomicBoolean();
        try (HostMapping hm = m.map(0, pages * P);
                UffdRegistration reg = m.registerUserfaultfd(hm, UffdAbi.REGISTER_MODE_MISSING, 0)) {
            CompletableFuture<Void> handler = CompletableFuture.runAsync(
                    () -> {
                        try (Arena local = Arena.ofConfined()) {
                            MemorySegment events = local.allocate(UffdAbi.MSG.byteSize() * 16);
                            Poller poller =
                                    new Poller(Linux.POLLIN, reg.userfaultfd().fd());
                            while (!done.get()) {
                                if (poller.poll(50) == 0) continue;
                                int n = reg.userfaultfd().read(events);
                                for (int i = 0; i < n; i++) {
                                    long offset = reg.fileOffsetOf(UffdMessages.faultAddress(events, i)) & -P;
                                    long r = reg.copy(offset, source.asSlice(offset, P), P);
                                    if (r == P) byCopy.addAndGet(P);
                                    else reg.wake(offset, P); // populated by the writer meanwhile
                                }
                            }
                        } catch (IOException e) {
                            throw new RuntimeException(e);
                        }
                    },
                    threads);
            CompletableFuture<Void> writer = CompletableFuture.runAsync(
                    () -> {
                        try {
                            for (int p = 0; p < pages; p += 8) {
                                long offset = p * P;
                                while (offset < (p + 8) * P) {
                                    try {
                                        long n = m.write(offset, source.asSlice(offset, (p + 8) * P - offset));
                                        byWrite.addAndGet(n);
                                        offset += n;
                                    } catch (SyscallException e) {
                                        assertThat(e.errno()).contains(Errno.ENOSPC);
                                        offset += P;
                                    }
                                }
                            }
                        } catch (IOException e) {
                            throw new RuntimeException(e);
                        }
                    },
                    threads);
            List<CompletableFuture<Void>> readers = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                int seed = t;
                readers.add(CompletableFuture.runAsync(
                        () -> {
                            Random r = new Random(seed);
                            for (int i = 0; i < 300; i++) {
                                int p = r.nextInt(pages);
                                try {
                                    assertThat(hm.getByte(p * P + r.nextInt((int) P)))
                                            .isEqualTo((byte) (p * 7 + 1));
                                } catch (PrivateMemoryException e) {
                                    throw new RuntimeException(e);
                                }
                            }
                        },
                        threads));
            }
            try {
                writer.get(60, TimeUnit.SECONDS);
                for (CompletableFuture<Void> f : readers) f.get(60, TimeUnit.SECONDS);
            } finally {
                done.set(true);
            }
            handler.get(10, TimeUnit.SECONDS);
            MemorySegment all = arena.allocate(pages * P);
            hm.read(0, all);
            assertThat(all.mismatch(source)).isEqualTo(-1);
        }
        assertThat(byCopy.get() + byWrite.get()).isEqualTo(pages * P);
        assertThat(m.populatedPages()).isEqualTo(pages);
    }
}
