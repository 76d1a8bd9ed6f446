package dev.gmem.restore;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.kvm.GuestException;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.testing.Host;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/** A real vCPU reads restored guest memory: after an eager restore on both backends, during a lazy one, and catching a corrupted page. */
class GuestCheckTest {
    static final long SIZE = 4L << 20;
    static final Duration TIMEOUT = Duration.ofSeconds(120);

    @TempDir
    Path dir;

    Path snapshot(long seed) throws Exception {
        return Fixtures.pack(Fixtures.raw(dir, "raw", SIZE, seed), dir.resolve("s.snap"), Codec.LZ4);
    }

    @ParameterizedTest
    @EnumSource(GuestMemory.Backend.class)
    void theVcpuSeesAnEagerRestore(GuestMemory.Backend backend) throws Exception {
        Host.assumeKvm();
        if (backend == GuestMemory.Backend.KERNEL) Host.assumeGuestMemfd();
        try (Snapshot s = Snapshot.open(snapshot(51));
                Destination d = Destination.anonymous(backend, s.size())) {
            EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), x -> {});
            GuestCheck.Result r = GuestCheck.run(s, d.memory(), null, 1, TIMEOUT);
            assertThat(r.pagesRead()).isEqualTo(SIZE / 4096);
            assertThat(r.backend()).isEqualTo(backend.label());
            assertThat(r.regions()).allSatisfy(x -> assertThat(x.actual()).isEqualTo(x.expected()));
        }
    }

    @Test
    void aCorruptedPageIsCaughtAndNamed() throws Exception {
        Host.assumeKvm();
        try (Snapshot s = Snapshot.open(snapshot(52));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size())) {
            EagerRestore.restore(s, d.memory(), EagerRestore.Options.automatic(false), x -> {});
            var c = s.chunks().stream()
                    .filter(x -> x.dataPages() > 0)
                    .skip(1)
                    .findFirst()
                    .orElseThrow();
            int p = 0;
            while (c.kind(p) != PageKind.DATA) p++;
            long at = (c.firstPage() + p) * 4096;
            try (HostMapping m = d.memory().map(at, 4096)) {
                m.setLong(0, m.getLong(0) ^ 0x100);
            }
            assertThatThrownBy(() -> GuestCheck.run(s, d.memory(), null, 1, TIMEOUT))
                    .isInstanceOf(GuestException.class)
                    .hasMessageContaining("first differing page at guest 0x" + Long.toHexString(at));
        }
    }

    @Test
    void theVcpusOwnFaultsAreServedByTheFaultEngine() throws Exception {
        Host.assumeKvm();
        Host.assumeUserfaultfd();
        try (Snapshot s = Snapshot.open(snapshot(53));
                Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, s.size());
                LazyRestore lazy = LazyRestore.start(
                        s,
                        d.memory(),
                        LazyRestore.Options.defaults(dev.gmem.fault.UffdMode.MISSING)
                                .withPrefetch(false))) {
            GuestCheck.Result r = GuestCheck.run(s, d.memory(), lazy.memory(), 1, TIMEOUT);
            assertThat(r.pagesRead()).isEqualTo(SIZE / 4096);
            assertThat(lazy.stats().faults())
                    .as("the vCPU's accesses came through userfaultfd")
                    .isPositive();
        }
    }
}
