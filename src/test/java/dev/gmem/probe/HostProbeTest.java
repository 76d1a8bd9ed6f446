package dev.gmem.probe;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Posix;
import dev.gmem.testing.Leaks;
import org.junit.jupiter.api.Test;

class HostProbeTest {
    @Test
    void everyAnswerHasAReason() {
        HostReport r = new HostProbe().run();
        assertThat(r.kernel().pageSize()).isEqualTo(Posix.pageSize());
        assertThat(r.kernel().release()).isEqualTo(System.getProperty("os.version"));
        assertThat(r.kvm().reason()).isNotBlank();
        assertThat(r.guestMemfd().reason()).isNotBlank();
        for (Check c : new Check[] {
            r.guestMemfd().write(),
            r.guestMemfd().conversion(),
            r.guestMemfd().userfaultfd(),
            r.userfaultfd().missingMemfd(),
            r.userfaultfd().minorMemfd(),
            r.hugePages().thpShmem()
        }) {
            assertThat(c.reason()).isNotBlank();
        }
    }

    @Test
    void answersAgreeWithEachOther() {
        HostReport r = new HostProbe().run();
        if (!r.kvm().available()) {
            assertThat(r.guestMemfd().available()).isFalse();
            assertThat(r.guestMemfd().reason()).startsWith("KVM unavailable");
        } else {
            assertThat(r.kvm().apiVersion()).isEqualTo(12);
        }
        if (r.guestMemfd().available()) {
            assertThat(r.guestMemfd().flags())
                    .isEqualTo(GuestMemfdFlag.decode(r.guestMemfd().flagsMask()).names());
            assertThat(r.guestMemfd().vmFlagsMask() & ~r.guestMemfd().flagsMask())
                    .isZero();
        } else {
            assertThat(r.guestMemfd().write().available()).isFalse();
        }
        if (!r.userfaultfd().available()) {
            assertThat(r.userfaultfd().missingMemfd().available()).isFalse();
        } else {
            assertThat(r.userfaultfd().features()).contains("MISSING_SHMEM");
            assertThat(r.userfaultfd().via()).isIn("syscall", "device");
        }
    }

    @Test
    void probingReleasesEverything() {
        new HostProbe().run();
        Leaks.Fds before = Leaks.fds();
        new HostProbe().run();
        assertThat(before.opened()).isEmpty();
        assertThat(Leaks.mappingsNamed("gmem-probe")).isZero();
        assertThat(Leaks.mappingsNamed("kvm-gmem")).isZero();
    }
}
