package dev.gmem.linux;

import java.util.Locale;

/**
 * Every system call gmem makes, by its number on x86_64 and on aarch64 (the kernel's
 * {@code asm/unistd_64.h} and {@code asm-generic/unistd.h}; {@code SysTest} checks them against
 * those headers where they are installed). All of them go through the C library's
 * {@code syscall(3)}: one downcall for every call, linked once, where a downcall per C function
 * cost a few milliseconds of linking each on the first use (docs/benchmarks.md, start time).
 */
enum Sys {
    READ(0, 63),
    WRITE(1, 64),
    CLOSE(3, 57),
    LSEEK(8, 62),
    MMAP(9, 222),
    MPROTECT(10, 226),
    MUNMAP(11, 215),
    IOCTL(16, 29),
    PREAD64(17, 67),
    PWRITE64(18, 68),
    MINCORE(27, 232),
    MADVISE(28, 233),
    SOCKET(41, 198),
    CONNECT(42, 203),
    SENDMSG(46, 211),
    RECVMSG(47, 212),
    BIND(49, 200),
    LISTEN(50, 201),
    SOCKETPAIR(53, 199),
    GETSOCKOPT(55, 209),
    UNAME(63, 160),
    FCNTL(72, 25),
    FTRUNCATE(77, 46),
    GETPRIORITY(140, 141),
    SETPRIORITY(141, 140),
    MLOCK(149, 228),
    GETTID(186, 178),
    TGKILL(234, 131),
    OPENAT(257, 56),
    PPOLL(271, 73),
    FALLOCATE(285, 47),
    ACCEPT4(288, 242),
    EVENTFD2(290, 19),
    PIPE2(293, 59),
    MEMFD_CREATE(319, 279),
    USERFAULTFD(323, 282),
    PIDFD_SEND_SIGNAL(424, 424),
    PIDFD_OPEN(434, 434),
    PIDFD_GETFD(438, 438);

    final long x86_64;
    final long aarch64;

    Sys(long x86_64, long aarch64) {
        this.x86_64 = x86_64;
        this.aarch64 = aarch64;
    }

    /** This call's number on this machine. */
    long number() {
        return switch (Machine.KIND) {
            case X86_64 -> x86_64;
            case AARCH64 -> aarch64;
            case OTHER ->
                throw new UnsupportedOperationException(
                        "gmem knows the system calls of x86_64 and aarch64, not of " + System.getProperty("os.arch"));
        };
    }

    /** Whether this is an aarch64 machine (some of its constants differ from x86_64's). */
    static boolean onAarch64() {
        return Machine.KIND == Machine.Kind.AARCH64;
    }

    /** The call's name as its manual page names it, for messages. */
    String call() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** This JVM's architecture. */
    private static final class Machine {
        enum Kind {
            X86_64,
            AARCH64,
            OTHER
        }

        static final Kind KIND = switch (System.getProperty("os.arch").toLowerCase(Locale.ROOT)) {
            case "amd64", "x86_64" -> Kind.X86_64;
            case "aarch64", "arm64" -> Kind.AARCH64;
            default -> Kind.OTHER;
        };
    }
}
