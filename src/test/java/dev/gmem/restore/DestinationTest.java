package dev.gmem.restore;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.RawImage;
import dev.gmem.util.HostMemory;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Guest memory for a restore is refused up front when the source's data could never be resident. */
class DestinationTest {
    @TempDir
    Path dir;

    @Test
    void moreDataThanTheHostCanHoldIsRefusedBeforeAnythingIsAllocated() throws Exception {
        try (RawImage s = RawImage.open(Fixtures.raw(dir, "raw", 4L << 20, 3), null, 1, b -> {})) {
            long data = s.counts().dataBytes();
            assertThat(data).isPositive();
            assertThatThrownBy(() -> Destination.checkResident(s, dev.gmem.memory.GuestMemory.Backend.MEMFD, data - 1))
                    .isInstanceOf(dev.gmem.memory.UnsupportedFeatureException.class)
                    .hasMessageContaining(s.path().toString())
                    .hasMessageContaining("of memory and swap this process may use");
            Destination.checkResident(s, dev.gmem.memory.GuestMemory.Backend.MEMFD, data); // exactly fits
            Destination.checkResident(
                    s, dev.gmem.memory.GuestMemory.Backend.KERNEL, 0); // unknown capacity: nothing refused
        }
    }

    /**
     * A guest the format allows (up to 4 PiB) whose page state would not fit the heap is this
     * host's limit (exit status 3), refused before any memory file exists, and an export leaves no file.
     */
    @Test
    void aGuestWhosePageStateTheHeapCannotHoldIsRefusedAsAHostLimit() throws Exception {
        long huge = dev.gmem.snapshot.Region.MAX_GUEST_ADDRESS;
        assertThatThrownBy(() -> Destination.checkState(huge))
                .isInstanceOf(dev.gmem.util.HostLimitException.class)
                .hasMessageContaining("guest memory of " + huge + " bytes needs 262144 MiB of page state")
                .hasMessageContaining("GMEM_JAVA_OPTS=-Xmx");
        assertThatThrownBy(() -> Destination.anonymous(dev.gmem.memory.GuestMemory.Backend.MEMFD, huge))
                .isInstanceOf(dev.gmem.util.HostLimitException.class);
        Path out = dir.resolve("export.mem");
        assertThatThrownBy(() -> Destination.export(out, huge)).isInstanceOf(dev.gmem.util.HostLimitException.class);
        assertThat(out).doesNotExist();
        assertThat(dir.toFile().list()).isEmpty();
        Destination.checkState(1L << 40); // 1 TiB: 64 MiB of state
    }

    @Test
    void theHostsCapacityIsReadFromMeminfo() {
        assertThat(HostMemory.capacity(true))
                .isGreaterThanOrEqualTo(HostMemory.capacity(false))
                .isPositive();
        assertThat(HostMemory.available()).isPositive();
    }
}
