package dev.gmem.memory;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.testing.Host;
import dev.gmem.uffd.UffdAbi;
import org.junit.jupiter.api.Test;

/**
 * The conformance suite on a real KVM guest_memfd. Features the kernel lacks are skipped with the
 * probe's reason; the tests below check that the backend then refuses them with that same reason.
 */
class KernelConformanceTest extends GuestMemoryConformance {
    @Override
    GuestMemory.Backend backend() {
        return GuestMemory.Backend.KERNEL;
    }

    @Override
    void assumeBackend() {
        Host.assumeGuestMemfd();
    }

    @Test
    void conversionTheKernelLacksIsRefusedWithTheProbesReason() throws Exception {
        Check conversion = HostProbe.host().guestMemfd().conversion();
        org.junit.jupiter.api.Assumptions.assumeFalse(conversion.available(), "this kernel has in-place conversion");
        GuestMemory m = create(4 * P, SHARED);
        assertThat(m.capabilities().conversion()).isEqualTo(conversion);
        assertThatThrownBy(() -> m.setAttributes(0, P, GuestMemory.PRIVATE))
                .isInstanceOfSatisfying(UnsupportedFeatureException.class, e -> {
                    assertThat(e.reason()).isEqualTo(conversion.reason());
                    assertThat(e.feature()).isEqualTo("in-place conversion");
                });
        assertThat(m.isPrivate(0)).isFalse();
    }

    @Test
    void userfaultfdTheKernelLacksIsRefusedWithTheProbesReason() throws Exception {
        Check uffd = HostProbe.host().guestMemfd().userfaultfd();
        org.junit.jupiter.api.Assumptions.assumeFalse(uffd.available(), "this kernel has userfaultfd on guest_memfd");
        GuestMemory m = create(4 * P, SHARED);
        try (HostMapping hm = m.map(0, 4 * P)) {
            assertThatThrownBy(() -> m.registerUserfaultfd(hm, UffdAbi.REGISTER_MODE_MISSING, 0))
                    .isInstanceOfSatisfying(
                            UnsupportedFeatureException.class,
                            e -> assertThat(e.reason()).isEqualTo(uffd.reason()));
        }
    }

    @Test
    void writeWorksWithOrWithoutTheKernelsWrite() throws Exception {
        GuestMemory m = create(4 * P, SHARED);
        MemoryCapabilities.WritePath path = m.capabilities().writePath();
        boolean kernelWrite = HostProbe.host().guestMemfd().write().available();
        assertThat(path)
                .isEqualTo(kernelWrite ? MemoryCapabilities.WritePath.KERNEL : MemoryCapabilities.WritePath.LIBRARY);
        assertThat(m.capabilities().write()).isNotBlank();
        assertThat(m.write(0, filled(P, 1))).isEqualTo(P);
    }
}
