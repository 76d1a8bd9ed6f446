package dev.gmem.kvm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Mapping;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import org.junit.jupiter.api.Test;

/** The runner on the real /dev/kvm: a vCPU in 64-bit mode reads guest memory and reports what it saw. */
class ChecksumGuestTest {
    static final long SIZE = 4L << 20;
    static final long PAGE = 4096;

    static long expected(MemorySegment m, long start, long steps, long stride) {
        long sum = 0;
        for (long i = 0; i < steps; i++)
            sum = GuestProgram.fold(sum, m.get(ValueLayout.JAVA_LONG_UNALIGNED, start + i * stride));
        return sum;
    }

    @Test
    void theGuestSeesTheHostsBytes() throws Exception {
        Host.assumeKvm();
        Leaks.Fds fds = Leaks.fds();
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT);
                Mapping mem = Mapping.anonymous(SIZE)) {
            MemorySegment m = mem.segment();
            for (long i = 0; i < SIZE / 8; i++) m.setAtIndex(ValueLayout.JAVA_LONG, i, i * 0x9E3779B97F4A7C15L + 7);
            vm.setUserMemoryRegion(0, 0, 0, SIZE, mem.address());
            try (ChecksumGuest g = ChecksumGuest.create(vm, 1, ChecksumGuest.reservedAddressAbove(SIZE))) {
                long pages = SIZE / PAGE;
                assertThat(g.checksum(0, pages, PAGE, Duration.ofSeconds(60))).isEqualTo(expected(m, 0, pages, PAGE));
                // again, over a part, at another offset within the page: the vCPU is reusable
                assertThat(g.checksum(PAGE * 3 + 16, 10, PAGE * 2, Duration.ofSeconds(60)))
                        .isEqualTo(expected(m, PAGE * 3 + 16, 10, PAGE * 2));
                // one changed word changes the guest's answer
                long before = g.checksum(0, pages, PAGE, Duration.ofSeconds(60));
                m.set(ValueLayout.JAVA_LONG, 100 * PAGE, m.get(ValueLayout.JAVA_LONG, 100 * PAGE) ^ 1);
                assertThat(g.checksum(0, pages, PAGE, Duration.ofSeconds(60)))
                        .isNotEqualTo(before)
                        .isEqualTo(expected(m, 0, pages, PAGE));
            }
        }
        assertThat(fds.opened()).isEmpty();
    }

    @Test
    void aGuestThatDoesNotHaltInTimeIsStoppedAndNamed() throws Exception {
        Host.assumeKvm();
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT);
                Mapping mem = Mapping.anonymous(SIZE)) {
            vm.setUserMemoryRegion(0, 0, 0, SIZE, mem.address());
            try (ChecksumGuest g = ChecksumGuest.create(vm, 1, ChecksumGuest.reservedAddressAbove(SIZE))) {
                // stride 0 over 2^40 steps never ends in time
                assertThatThrownBy(() -> g.checksum(0, 1L << 40, 0, Duration.ofMillis(300)))
                        .isInstanceOf(GuestException.class)
                        .hasMessageContaining("did not halt within 300 ms")
                        .hasMessageContaining("KVM_EXIT_INTR")
                        .hasMessageContaining("rip=0x")
                        .hasMessageContaining("rcx=0x");
                // and the vCPU still works afterwards
                assertThat(g.checksum(0, 4, PAGE, Duration.ofSeconds(30)))
                        .isEqualTo(expected(mem.segment(), 0, 4, PAGE));
            }
        }
    }

    @Test
    void memoryNoSlotBacksIsAnUnexpectedExit() throws Exception {
        Host.assumeKvm();
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT);
                Mapping mem = Mapping.anonymous(SIZE)) {
            vm.setUserMemoryRegion(0, 0, 0, SIZE, mem.address());
            try (ChecksumGuest g =
                    ChecksumGuest.create(vm, 1, ChecksumGuest.reservedAddressAbove(SIZE) + (64L << 20))) {
                // between the slot's end and the reserved region: no memslot
                assertThatThrownBy(() -> g.checksum(SIZE + (8L << 20), 1, PAGE, Duration.ofSeconds(30)))
                        .isInstanceOf(GuestException.class)
                        .hasMessageContaining("rip=0x");
            }
        }
    }
}
