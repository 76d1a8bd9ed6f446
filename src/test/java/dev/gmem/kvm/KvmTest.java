package dev.gmem.kvm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.assertj.core.api.ThrowableAssert.ThrowingCallable;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The KVM bindings against the real /dev/kvm (skipped, with the probe's reason, where there is none). */
class KvmTest {
    private static final long PAGE = Posix.pageSize();
    private static final long MMAP_SHARED = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);

    @BeforeEach
    void needsGuestMemfd() {
        Host.assumeGuestMemfd();
    }

    private static void assertErrno(Errno expected, ThrowingCallable call) {
        assertThatThrownBy(call)
                .isInstanceOfSatisfying(
                        SyscallException.class, e -> assertThat(e.errno()).contains(expected));
    }

    @Test
    void handshakeAndCapabilities() throws Exception {
        try (Kvm kvm = Kvm.open()) {
            assertThat(kvm.apiVersion()).isEqualTo(12);
            assertThat(kvm.vcpuMmapSize()).isPositive();
            assertThat(kvm.check(KvmCap.GUEST_MEMFD)).isEqualTo(1);
            long systemMask = kvm.check(KvmCap.GUEST_MEMFD_FLAGS);
            assertThat(systemMask & GuestMemfdFlag.MMAP.bit())
                    .as("MMAP is always offered from 6.18")
                    .isNotZero();
            try (Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT)) {
                assertThat(vm.check(KvmCap.GUEST_MEMFD)).isEqualTo(1);
                assertThat(vm.check(KvmCap.GUEST_MEMFD_FLAGS) & ~systemMask)
                        .as("a VM offers no flag KVM lacks")
                        .isZero();
            }
        }
    }

    /** Rule 7: KVM_CREATE_GUEST_MEMFD is a VM ioctl; rules 9 and 11: bad sizes and unknown flags give EINVAL. */
    @Test
    void creationValidatesSizeAndFlags() throws Exception {
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(0);
                Arena arena = Arena.ofConfined()) {
            MemorySegment args = arena.allocate(KvmAbi.CREATE_GUEST_MEMFD);
            args.set(ValueLayout.JAVA_LONG, 0, PAGE);
            assertErrno(
                    Errno.EINVAL, () -> kvm.fd().ioctl("KVM_CREATE_GUEST_MEMFD", KvmAbi.KVM_CREATE_GUEST_MEMFD, args));
            for (long size : new long[] {0, 1, PAGE - 1, PAGE + 1, Long.MIN_VALUE}) {
                assertErrno(Errno.EINVAL, () -> vm.createGuestMemfd(size, 0).close());
            }
            long mask = vm.check(KvmCap.GUEST_MEMFD_FLAGS);
            for (int bit = 0; bit < 64; bit++) {
                long flag = 1L << bit;
                if ((mask & flag) != 0) {
                    try (GuestMemfd g = vm.createGuestMemfd(PAGE, flag)) {
                        assertThat(g.flags()).isEqualTo(flag);
                    }
                } else {
                    assertErrno(
                            Errno.EINVAL, () -> vm.createGuestMemfd(PAGE, flag).close());
                }
            }
        }
    }

    /** Rules 8, 19, 20, 32: not close-on-exec, no pwrite/ftruncate, MAP_SHARED only. */
    @Test
    void guestMemfdFileProperties() throws Exception {
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(0);
                GuestMemfd g = vm.createGuestMemfd(4 * PAGE, MMAP_SHARED);
                GuestMemfd other = vm.createGuestMemfd(4 * PAGE, MMAP_SHARED)) {
            assertThat(g.fd().number()).isNotEqualTo(other.fd().number());
            assertThat(g.fd().fcntl(Linux.F_GETFD, 0) & Linux.FD_CLOEXEC).isZero();
            assertThat(g.has(GuestMemfdFlag.MMAP)).isTrue();
            assertErrno(Errno.EINVAL, () -> g.fd().truncate(8 * PAGE));
            assertErrno(Errno.EINVAL, () -> Mapping.map(g.fd(), 0, PAGE, Linux.PROT_READ, Linux.MAP_PRIVATE));
            try (Mapping m = Mapping.shared(g.fd(), 4 * PAGE)) {
                m.segment().set(ValueLayout.JAVA_LONG, PAGE, 0xabcdL);
                assertThat(m.segment().get(ValueLayout.JAVA_LONG, PAGE)).isEqualTo(0xabcdL);
                assertThat(m.segment().get(ValueLayout.JAVA_LONG, 0))
                        .as("INIT_SHARED pages start zeroed")
                        .isZero();
                g.fd().fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_PUNCH_HOLE, PAGE, PAGE);
                assertThat(m.segment().get(ValueLayout.JAVA_LONG, PAGE))
                        .as("a punched page reads zero")
                        .isZero();
            }
            assertErrno(Errno.EOPNOTSUPP, () -> g.fd().fallocate(0, 0, PAGE));
            assertErrno(Errno.EINVAL, () -> g.fd().fallocate(Linux.FALLOC_FL_KEEP_SIZE, 1, PAGE));
            assertErrno(Errno.EINVAL, () -> g.fd().fallocate(Linux.FALLOC_FL_KEEP_SIZE, 0, 8 * PAGE));
        }
    }

    /** Rules 42 to 48: binding a guest_memfd to a memslot. */
    @Test
    void memslotBinding() throws Exception {
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(0);
                GuestMemfd g = vm.createGuestMemfd(4 * PAGE, MMAP_SHARED);
                Mapping m = Mapping.shared(g.fd(), 4 * PAGE)) {
            int gmem = KvmAbi.KVM_MEM_GUEST_MEMFD;
            assertErrno(Errno.EINVAL, () -> vm.setUserMemoryRegion(0, gmem, 0, 2 * PAGE, m.address()));
            assertErrno(Errno.EINVAL, () -> vm.setUserMemoryRegion2(0, gmem, 0, 2 * PAGE, m.address(), g, 3 * PAGE));
            assertErrno(Errno.EINVAL, () -> vm.setUserMemoryRegion2(0, gmem, 0, 2 * PAGE, m.address(), g, 1));
            vm.setUserMemoryRegion2(0, gmem, 0, 2 * PAGE, m.address(), g, 0);
            assertErrno(
                    Errno.EINVAL,
                    () -> vm.setUserMemoryRegion2(1, gmem, 0x100000, 2 * PAGE, m.address() + PAGE, g, PAGE));
            assertErrno(
                    Errno.EEXIST,
                    () -> vm.setUserMemoryRegion2(2, gmem, PAGE, 2 * PAGE, m.address() + 2 * PAGE, g, 2 * PAGE));
            vm.setUserMemoryRegion2(1, gmem, 0x100000, 2 * PAGE, m.address() + 2 * PAGE, g, 2 * PAGE);
            vm.setUserMemoryRegion2(0, 0, 0, 0, 0, null, 0); // delete slot 0
            vm.setUserMemoryRegion2(0, gmem, 0, 2 * PAGE, m.address(), g, 0); // and create it again
        }
    }

    @Test
    void everythingIsReleased() throws Exception {
        handshakeAndCapabilities();
        Leaks.Fds before = Leaks.fds();
        int gfd;
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(0);
                GuestMemfd g = vm.createGuestMemfd(PAGE, MMAP_SHARED)) {
            gfd = g.fd().number();
            assertThat(Leaks.isOpen(gfd)).isTrue();
        }
        assertThat(before.opened()).isEmpty();
    }
}
