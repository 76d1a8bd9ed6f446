package dev.gmem.uffd;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Poller;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** userfaultfd on real memfd mappings: the handshake, registration, and faults served from another thread. */
class UserfaultfdTest {
    private static final long PAGE = Posix.pageSize();

    @BeforeEach
    void needsUserfaultfd() {
        Host.assumeUserfaultfd();
    }

    @Test
    void handshakeNegotiatesFeatures() throws Exception {
        try (Userfaultfd uffd = Userfaultfd.open(0)) {
            assertThat(uffd.api()).isNull();
            Userfaultfd.Api api = uffd.handshake(UffdFeature.mask(UffdFeature.MISSING_SHMEM, UffdFeature.EVENT_REMOVE));
            assertThat(uffd.api()).isEqualTo(api);
            assertThat(UffdFeature.MISSING_SHMEM.in(api.features())).isTrue();
            assertThat(api.ioctls())
                    .isEqualTo((1L << UffdAbi.IOCTL_API)
                            | (1L << UffdAbi.IOCTL_REGISTER)
                            | (1L << UffdAbi.IOCTL_UNREGISTER));
            assertThatThrownBy(() -> uffd.handshake(0))
                    .as("a second UFFDIO_API")
                    .isInstanceOfSatisfying(
                            SyscallException.class, e -> assertThat(e.errno()).contains(Errno.EINVAL));
        }
        try (Userfaultfd uffd = Userfaultfd.open(0)) {
            assertThatThrownBy(() -> uffd.handshake(1L << 50))
                    .as("an unknown feature bit")
                    .isInstanceOfSatisfying(SyscallException.class, e -> {
                        assertThat(e.errno()).contains(Errno.EINVAL);
                        assertThat(e.getMessage()).contains("features=0x4000000000000");
                    });
        }
    }

    @Test
    void registrationValidatesItsArguments() throws Exception {
        try (Fd memfd = Fd.memfd("gmem-uffd-reg", Linux.MFD_CLOEXEC);
                Userfaultfd uffd = Userfaultfd.open(0)) {
            memfd.truncate(4 * PAGE);
            uffd.handshake(0);
            try (Mapping m = Mapping.shared(memfd, 4 * PAGE)) {
                assertThatThrownBy(() -> uffd.register(m.address() + 1, PAGE, UffdAbi.REGISTER_MODE_MISSING))
                        .isInstanceOfSatisfying(
                                SyscallException.class,
                                e -> assertThat(e.errno()).contains(Errno.EINVAL));
                assertThatThrownBy(() -> uffd.register(m, 0, PAGE, 0))
                        .isInstanceOfSatisfying(
                                SyscallException.class,
                                e -> assertThat(e.errno()).contains(Errno.EINVAL));
                long ioctls =
                        uffd.register(m, 0, 4 * PAGE, UffdAbi.REGISTER_MODE_MISSING | UffdAbi.REGISTER_MODE_MINOR);
                assertThat(ioctls & (1L << UffdAbi.IOCTL_COPY)).isNotZero();
                assertThat(ioctls & (1L << UffdAbi.IOCTL_CONTINUE)).isNotZero();
                uffd.unregister(m.address(), 4 * PAGE);
                assertThatThrownBy(() -> uffd.register(m, 0, 8 * PAGE, UffdAbi.REGISTER_MODE_MISSING))
                        .isInstanceOf(IndexOutOfBoundsException.class);
            }
        }
    }

    /** MISSING: a thread reading a missing page blocks until another thread copies the page in. */
    @Test
    void missingFaultIsServedByCopy() throws Exception {
        Leaks.Fds fdsBefore = Leaks.fds();
        try (Fd memfd = Fd.memfd("gmem-uffd-missing", Linux.MFD_CLOEXEC);
                Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK);
                Arena arena = Arena.ofShared()) {
            memfd.truncate(4 * PAGE);
            uffd.handshake(UffdFeature.MISSING_SHMEM.bit());
            try (Mapping m = Mapping.shared(memfd, 4 * PAGE)) {
                uffd.register(m, 0, 4 * PAGE, UffdAbi.REGISTER_MODE_MISSING);
                CompletableFuture<Long> reader =
                        CompletableFuture.supplyAsync(() -> m.segment().get(ValueLayout.JAVA_LONG, 2 * PAGE + 8));

                MemorySegment events = arena.allocate(UffdAbi.MSG.byteSize() * 4);
                Poller poller = new Poller(Linux.POLLIN, uffd.fd());
                assertThat(poller.poll(10_000)).as("a fault event within 10 s").isEqualTo(1);
                int n = uffd.read(events);
                assertThat(n).isEqualTo(1);
                assertThat(UffdMessages.event(events, 0)).isEqualTo(UffdAbi.EVENT_PAGEFAULT);
                assertThat(UffdMessages.faultAddress(events, 0)).isEqualTo(m.address() + 2 * PAGE);
                assertThat(UffdMessages.faultFlags(events, 0) & UffdAbi.PAGEFAULT_FLAG_MINOR)
                        .isZero();
                assertThat(reader).isNotDone();

                MemorySegment page = arena.allocate(PAGE);
                page.set(ValueLayout.JAVA_LONG, 8, 0x0123456789abcdefL);
                assertThat(uffd.copy(m.address() + 2 * PAGE, page, PAGE, 0)).isEqualTo(PAGE);
                assertThat(reader.get(10, TimeUnit.SECONDS)).isEqualTo(0x0123456789abcdefL);
                assertThat(uffd.copy(m.address() + 2 * PAGE, page, PAGE, 0)).isEqualTo(Userfaultfd.EXISTS);
                assertThat(uffd.zeropage(m.address(), PAGE, 0)).isEqualTo(PAGE);
                assertThat(m.segment().get(ValueLayout.JAVA_LONG, 0)).isZero();
                assertThat(uffd.read(events)).as("no events pending").isZero();
                assertThatThrownBy(() -> uffd.copy(m.address() + 1, page, PAGE, 0))
                        .isInstanceOfSatisfying(
                                SyscallException.class,
                                e -> assertThat(e.errno()).contains(Errno.EINVAL));
            }
        }
        assertThat(fdsBefore.opened()).isEmpty();
    }

    /** MINOR: the page exists in the file; the fault is reported as minor and CONTINUE maps it. */
    @Test
    void minorFaultIsServedByContinue() throws Exception {
        Host.assumeMinorOnMemfd();
        try (Fd memfd = Fd.memfd("gmem-uffd-minor", Linux.MFD_CLOEXEC);
                Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK);
                Arena arena = Arena.ofShared()) {
            memfd.truncate(2 * PAGE);
            uffd.handshake(UffdFeature.MINOR_SHMEM.bit());
            try (Mapping m = Mapping.shared(memfd, 2 * PAGE)) {
                uffd.register(m, 0, 2 * PAGE, UffdAbi.REGISTER_MODE_MINOR);
                assertThat(uffd.continueRange(m.address() + PAGE, PAGE, 0)).isEqualTo(Userfaultfd.NO_PAGE);
                MemorySegment page = arena.allocate(PAGE);
                page.fill((byte) 0xcd);
                memfd.pwriteFully(page, PAGE);

                CompletableFuture<Byte> reader =
                        CompletableFuture.supplyAsync(() -> m.segment().get(ValueLayout.JAVA_BYTE, PAGE + 100));
                MemorySegment events = arena.allocate(UffdAbi.MSG.byteSize());
                assertThat(new Poller(Linux.POLLIN, uffd.fd()).poll(10_000)).isEqualTo(1);
                assertThat(uffd.read(events)).isEqualTo(1);
                assertThat(UffdMessages.faultFlags(events, 0) & UffdAbi.PAGEFAULT_FLAG_MINOR)
                        .isNotZero();
                assertThat(UffdMessages.faultAddress(events, 0)).isEqualTo(m.address() + PAGE);
                assertThat(uffd.continueRange(m.address() + PAGE, PAGE, 0)).isEqualTo(PAGE);
                assertThat(reader.get(10, TimeUnit.SECONDS)).isEqualTo((byte) 0xcd);
            }
        }
    }
}
