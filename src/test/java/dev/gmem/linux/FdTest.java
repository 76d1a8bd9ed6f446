package dev.gmem.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.testing.Leaks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class FdTest {
    private static final long PAGE = Posix.pageSize();

    @Test
    void memfdReadWriteSeekAndHoles() throws Exception {
        try (Fd fd = Fd.memfd("gmem-fd", Linux.MFD_CLOEXEC);
                Arena arena = Arena.ofConfined()) {
            fd.truncate(16 * PAGE);
            MemorySegment page = arena.allocate(PAGE);
            page.fill((byte) 0x11);
            assertThat(fd.pwrite(page, 4 * PAGE)).isEqualTo(PAGE);
            MemorySegment back = arena.allocate(PAGE);
            assertThat(fd.pread(back, 4 * PAGE)).isEqualTo(PAGE);
            assertThat(back.mismatch(page)).isEqualTo(-1);
            // Holes and data are found with SEEK_DATA / SEEK_HOLE.
            assertThat(fd.lseek(0, Linux.SEEK_DATA)).isEqualTo(4 * PAGE);
            assertThat(fd.lseek(4 * PAGE, Linux.SEEK_HOLE)).isEqualTo(5 * PAGE);
            assertThatThrownBy(() -> fd.lseek(5 * PAGE, Linux.SEEK_DATA))
                    .isInstanceOfSatisfying(
                            SyscallException.class, e -> assertThat(e.errno()).contains(Errno.ENXIO));
            assertThat(fd.seekData(0)).isEqualTo(4 * PAGE);
            assertThat(fd.seekData(4 * PAGE + 1)).isEqualTo(4 * PAGE + 1);
            assertThat(fd.seekData(5 * PAGE))
                    .as("no data after the last page: -1, not a failure")
                    .isEqualTo(-1);
            assertThat(fd.dataExtents(16 * PAGE)).containsExactly(4 * PAGE, 5 * PAGE);
            // Punching the page makes it a hole that reads zeros.
            fd.fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_PUNCH_HOLE, 4 * PAGE, PAGE);
            assertThat(fd.pread(back, 4 * PAGE)).isEqualTo(PAGE);
            assertThat(back.toArray(ValueLayout.JAVA_BYTE)).containsOnly(0);
            assertThatThrownBy(() -> fd.lseek(0, Linux.SEEK_DATA)).isInstanceOf(SyscallException.class);
            assertThat(fd.seekData(0)).isEqualTo(-1);
            assertThat(fd.dataExtents(16 * PAGE)).isEmpty();
            // write/read at the file position.
            fd.lseek(0, Linux.SEEK_SET);
            assertThat(fd.write(page)).isEqualTo(PAGE);
            fd.lseek(0, Linux.SEEK_SET);
            assertThat(fd.read(back)).isEqualTo(PAGE);
            assertThat(back.get(ValueLayout.JAVA_BYTE, 0)).isEqualTo((byte) 0x11);
            assertThat(fd.fcntl(Linux.F_GETFD, 0) & Linux.FD_CLOEXEC).isEqualTo(Linux.FD_CLOEXEC);
        }
    }

    /**
     * The one shape of syscall(3) passes a buffer as a segment, which the linker checks: heap memory
     * and memory already freed are refused (a bug in the caller, never an OS error), and integers in
     * a pointer's place keep their bits (a negative descriptor fails with EBADF).
     */
    @Test
    void buffersAreCheckedByTheLinkerAndIntegersKeepTheirBits() throws Exception {
        try (Fd fd = Fd.memfd("gmem-fd-heap", Linux.MFD_CLOEXEC)) {
            fd.truncate(PAGE);
            assertThatThrownBy(() -> fd.pwrite(MemorySegment.ofArray(new byte[16]), 0))
                    .isInstanceOf(AssertionError.class)
                    .hasCauseInstanceOf(IllegalArgumentException.class);
            MemorySegment freed;
            try (Arena arena = Arena.ofConfined()) {
                freed = arena.allocate(16);
            }
            MemorySegment gone = freed;
            assertThatThrownBy(() -> fd.pwrite(gone, 0))
                    .isInstanceOf(AssertionError.class)
                    .hasCauseInstanceOf(IllegalStateException.class);
            try (Arena arena = Arena.ofConfined()) {
                MemorySegment b = arena.allocate(16);
                assertThat(fd.pwrite(b, 0)).isEqualTo(16);
            }
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment b = arena.allocate(16);
            long r = Native.syscall(Native.callState(), Sys.PWRITE64, -1, b, 16, 0);
            assertThat(r).isEqualTo(-1);
            assertThat(Native.errno(Native.callState())).isEqualTo(Errno.EBADF.number());
        }
    }

    @Test
    void fallocateErrorsNameTheCall() throws Exception {
        try (Fd fd = Fd.memfd("gmem-fd-errors", Linux.MFD_CLOEXEC)) {
            fd.truncate(PAGE);
            assertThatThrownBy(() -> fd.fallocate(Linux.FALLOC_FL_COLLAPSE_RANGE | 0x40, 0, PAGE))
                    .isInstanceOfSatisfying(SyscallException.class, e -> {
                        assertThat(e.errno()).contains(Errno.EOPNOTSUPP);
                        assertThat(e.getMessage())
                                .startsWith("fallocate(fd=" + fd.number()
                                        + " memfd:gmem-fd-errors, mode=0x48, off=0, len=" + PAGE + ")");
                    });
        }
    }

    @Test
    void closeReleasesTheDescriptorOnceAndRefusesLaterUse() throws Exception {
        Leaks.Fds before = Leaks.fds();
        Fd fd = Fd.memfd("gmem-close", Linux.MFD_CLOEXEC);
        int n = fd.number();
        assertThat(Leaks.isOpen(n)).isTrue();
        Fd copy = fd.dup();
        assertThat(copy.number()).isNotEqualTo(n);
        fd.close();
        fd.close(); // idempotent
        assertThat(fd.isOpen()).isFalse();
        assertThatThrownBy(fd::number).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
        assertThat(Leaks.isOpen(copy.number())).isTrue();
        copy.close();
        assertThat(before.opened()).isEmpty();
    }

    @Test
    void openCreatesFilesAndEventfdCounts(@TempDir Path dir) throws Exception {
        Path p = dir.resolve("f");
        try (Fd fd = Fd.open(p, Linux.O_RDWR | Linux.O_CREAT | Linux.O_EXCL | Linux.O_CLOEXEC, 0600);
                Arena arena = Arena.ofConfined()) {
            MemorySegment s = arena.allocateFrom("hello");
            fd.pwriteFully(s.asSlice(0, 5), 0);
        }
        assertThat(Files.readString(p)).isEqualTo("hello");
        assertThatThrownBy(() -> Fd.open(p, Linux.O_RDWR | Linux.O_CREAT | Linux.O_EXCL, 0600))
                .isInstanceOfSatisfying(
                        SyscallException.class, e -> assertThat(e.errno()).contains(Errno.EEXIST));

        try (Fd efd = Fd.eventfd(0, Linux.EFD_CLOEXEC | Linux.EFD_NONBLOCK);
                Arena arena = Arena.ofConfined()) {
            MemorySegment v = arena.allocate(ValueLayout.JAVA_LONG);
            assertThatThrownBy(() -> efd.read(v))
                    .isInstanceOfSatisfying(
                            SyscallException.class, e -> assertThat(e.errno()).contains(Errno.EAGAIN));
            v.set(ValueLayout.JAVA_LONG, 0, 3);
            efd.write(v);
            efd.write(v);
            assertThat(efd.read(v)).isEqualTo(8);
            assertThat(v.get(ValueLayout.JAVA_LONG, 0)).isEqualTo(6);
            Poller poller = new Poller(Linux.POLLIN, efd);
            assertThat(poller.poll(0)).isZero();
            efd.write(v);
            assertThat(poller.poll(1000)).isEqualTo(1);
            assertThat(poller.ready(0) & Linux.POLLIN).isEqualTo(Linux.POLLIN);
        }
    }

    @Test
    void ioctlNumbersEncodeLikeTheKernelMacros() {
        assertThat(Ioc.io(0xAE, 0x01)).isEqualTo(0x0000AE01L);
        assertThat(Ioc.iow(0xAE, 0x46, 32)).isEqualTo(0x4020AE46L);
        assertThat(Ioc.ior(0xAE, 0x81, 144)).isEqualTo(0x8090AE81L);
        assertThat(Ioc.iowr(0xAE, 0xd4, 64)).isEqualTo(0xC040AED4L);
        assertThatThrownBy(() -> Ioc.iow(0xAE, 0x100, 8)).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Ioc.iow(0xAE, 1, 0x4000)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void unameAndSysconf() throws Exception {
        Posix.Uname u = Posix.uname();
        assertThat(u.sysname()).isEqualTo("Linux");
        assertThat(u.release()).isEqualTo(System.getProperty("os.version"));
        assertThat(Posix.pageSize()).isPositive().matches(p -> Long.bitCount(p) == 1, "a power of two");
        // read from the auxiliary vector: what the C library says too
        assertThat(Posix.pageSize()).isEqualTo(Posix.sysconf(Linux.SC_PAGESIZE));
        assertThat(Posix.onlineCpus()).isEqualTo(Runtime.getRuntime().availableProcessors());
    }

    /** A thread's nice value is its own: raised on one thread, read back there, unchanged on the others. */
    @Test
    void aThreadsNiceValueIsItsOwn() throws Exception {
        int mine = Posix.threadNice();
        java.util.concurrent.atomic.AtomicInteger seen = new java.util.concurrent.atomic.AtomicInteger(-100);
        Thread t = Thread.ofPlatform().start(() -> {
            try {
                Posix.setThreadNice(Math.min(19, mine + 5));
                seen.set(Posix.threadNice());
            } catch (SyscallException e) {
                throw new AssertionError(e);
            }
        });
        t.join(10_000);
        assertThat(seen.get()).isEqualTo(Math.min(19, mine + 5));
        assertThat(Posix.threadNice()).isEqualTo(mine);
    }

    /** isatty(3)'s question asked directly: a pseudo-terminal answers TCGETS, a pipe does not. */
    @Test
    void aTerminalIsToldFromAPipe() throws Exception {
        org.junit.jupiter.api.Assumptions.assumeTrue(
                Files.exists(Path.of("/dev/ptmx")), "no /dev/ptmx here (no devpts): no terminal to tell a pipe from");
        Fd[] pipe = Fd.pipe(0);
        try (Fd r = pipe[0];
                Fd w = pipe[1];
                Fd pty = Fd.open(java.nio.file.Path.of("/dev/ptmx"), Linux.O_RDWR | Linux.O_CLOEXEC, 0)) {
            assertThat(Posix.isTerminal(r.number())).isFalse();
            assertThat(Posix.isTerminal(w.number())).isFalse();
            assertThat(Posix.isTerminal(pty.number())).isTrue();
        }
    }
}
