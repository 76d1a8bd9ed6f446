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

    @Test
    void theHostsCapacityIsReadFromMeminfo() {
        assertThat(HostMemory.capacity(true))
                .isGreaterThanOrEqualTo(HostMemory.capacity(false))
                .isPositive();
        assertThat(HostMemory.available()).isPositive();
    }
}
