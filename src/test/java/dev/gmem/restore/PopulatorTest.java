package dev.gmem.restore;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.GuestMemories;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.UnsupportedFeatureException;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;

class PopulatorTest {
    static final long P = Posix.pageSize();
    static final long SHARED = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);
    /** Not a multiple of the 2 MiB slice: the last thread gets a short slice. */
    static final long SIZE = (5L << 20) + 3 * P;

    static List<Arguments> everyStrategyOnEveryBackend() {
        List<Arguments> args = new ArrayList<>();
        for (GuestMemory.Backend b : GuestMemory.Backend.values()) {
            for (Strategy s : Strategy.values()) {
                for (int threads : new int[] {1, 2, 3}) args.add(Arguments.of(b, s, threads));
            }
        }
        return args;
    }

    static GuestMemory create(GuestMemory.Backend backend, long size, long flags) throws Exception {
        if (backend == GuestMemory.Backend.KERNEL) {
            Check g = new Check(
                    HostProbe.host().guestMemfd().available(),
                    HostProbe.host().guestMemfd().reason());
            assumeTrue(g.available(), g.reason());
        }
        return GuestMemories.create(backend, size, flags);
    }

    static MemorySegment source(Arena arena, long size) {
        MemorySegment s = arena.allocate(size, P);
        for (long i = 0; i < size / 8; i++) s.setAtIndex(ValueLayout.JAVA_LONG, i, i * 0x9E3779B97F4A7C15L + 1);
        return s;
    }

    @ParameterizedTest(name = "{0} {1} x{2}")
    @MethodSource("everyStrategyOnEveryBackend")
    void everyStrategyPopulatesTheRightBytes(GuestMemory.Backend backend, Strategy strategy, int threads)
            throws Exception {
        try (GuestMemory m = create(backend, SIZE + 2 * P, SHARED);
                Arena arena = Arena.ofShared()) {
            Check available = Populator.availability(strategy, m);
            assumeTrue(available.available(), available.reason());
            MemorySegment src = source(arena, SIZE);
            Populator.populate(strategy, threads, m, P, src);
            assertThat(m.isPopulated(0)).as("the page before the range").isFalse();
            assertThat(m.isPopulated(P)).isTrue();
            assertThat(m.isPopulated(SIZE)).isTrue();
            assertThat(m.isPopulated(SIZE + P)).as("the page after the range").isFalse();
            MemorySegment view = m.guestView();
            assertThat(view.asSlice(P, SIZE).mismatch(src)).isEqualTo(-1);
            assertThat(view.get(ValueLayout.JAVA_LONG, 0)).isZero();
            assertThat(view.get(ValueLayout.JAVA_LONG, SIZE + P)).isZero();
        }
    }

    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void unavailableStrategiesAreRefusedWithTheirReason(GuestMemory.Backend backend) throws Exception {
        try (GuestMemory m = create(backend, 4 * P, SHARED);
                Arena arena = Arena.ofShared()) {
            for (Strategy s : Strategy.values()) {
                Check c = Populator.availability(s, m);
                if (c.available()) continue;
                assertThatThrownBy(() -> Populator.populate(s, 1, m, 0, source(arena, P)))
                        .isInstanceOfSatisfying(
                                UnsupportedFeatureException.class,
                                e -> assertThat(e.reason()).isEqualTo(c.reason()));
            }
        }
    }

    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void writePopulationKeepsPopulateOnce(GuestMemory.Backend backend) throws Exception {
        try (GuestMemory m = create(backend, 16 * P, SHARED);
                Arena arena = Arena.ofShared()) {
            Populator.populate(Strategy.WRITE, 2, m, 0, source(arena, 8 * P));
            assertThatThrownBy(() -> Populator.populate(Strategy.WRITE, 1, m, 4 * P, source(arena, 8 * P)))
                    .isInstanceOfSatisfying(
                            SyscallException.class, e -> assertThat(e.errno()).contains(Errno.ENOSPC));
        }
    }

    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void mappedStrategiesRefusePrivatePages(GuestMemory.Backend backend) throws Exception {
        try (GuestMemory m = create(backend, 4 * P, GuestMemfdFlag.MMAP.bit());
                Arena arena = Arena.ofShared()) {
            assertThatThrownBy(() -> Populator.populate(Strategy.POPULATE_COPY, 1, m, 0, source(arena, 4 * P)))
                    .isInstanceOfSatisfying(dev.gmem.memory.PrivateMemoryException.class, e -> {
                        assertThat(e.offset()).isZero();
                        assertThat(e.getMessage()).contains("private");
                    });
        }
    }

    /** The automatic choice follows the host: write() where it is the kernel's, bulk-faulted copies where not. */
    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void theChoiceIsExplainedAndUsedByPopulate(GuestMemory.Backend backend) throws Exception {
        try (GuestMemory m = create(backend, 4 << 20, SHARED);
                Arena arena = Arena.ofShared()) {
            Populator.Plan plan = Populator.choose(m);
            assertThat(plan.reason()).isNotBlank();
            assertThat(Populator.availability(plan.strategy(), m).available()).isTrue();
            boolean kernelWrite = backend == GuestMemory.Backend.MEMFD
                    || HostProbe.host().guestMemfd().write().available();
            assertThat(plan.strategy()).isEqualTo(kernelWrite ? Strategy.WRITE : Strategy.POPULATE_COPY);
            MemorySegment src = source(arena, 4 << 20);
            assertThat(Populator.populate(m, 0, src)).isEqualTo(plan);
            assertThat(m.guestView().mismatch(src)).isEqualTo(-1);
        }
    }
}
