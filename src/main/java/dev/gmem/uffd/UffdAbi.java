package dev.gmem.uffd;

import dev.gmem.linux.Ioc;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;

/** The userfaultfd binary interface (x86_64 and aarch64; specification §1.6). */
public final class UffdAbi {
    private UffdAbi() {}

    public static final int UFFDIO = 0xAA;
    public static final long UFFD_API = 0xAA;
    /** Flag for userfaultfd(2) and USERFAULTFD_IOC_NEW: only user-mode faults are reported. */
    public static final int UFFD_USER_MODE_ONLY = 1;

    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;

    public static final StructLayout API =
            MemoryLayout.structLayout(U64.withName("api"), U64.withName("features"), U64.withName("ioctls"));
    public static final StructLayout RANGE = MemoryLayout.structLayout(U64.withName("start"), U64.withName("len"));
    public static final StructLayout REGISTER =
            MemoryLayout.structLayout(RANGE.withName("range"), U64.withName("mode"), U64.withName("ioctls"));
    public static final StructLayout COPY = MemoryLayout.structLayout(
            U64.withName("dst"), U64.withName("src"), U64.withName("len"), U64.withName("mode"), U64.withName("copy"));
    public static final StructLayout ZEROPAGE =
            MemoryLayout.structLayout(RANGE.withName("range"), U64.withName("mode"), U64.withName("zeropage"));
    public static final StructLayout CONTINUE =
            MemoryLayout.structLayout(RANGE.withName("range"), U64.withName("mode"), U64.withName("mapped"));
    public static final StructLayout WRITEPROTECT =
            MemoryLayout.structLayout(RANGE.withName("range"), U64.withName("mode"));
    public static final StructLayout POISON =
            MemoryLayout.structLayout(RANGE.withName("range"), U64.withName("mode"), U64.withName("updated"));
    public static final StructLayout MOVE = MemoryLayout.structLayout(
            U64.withName("dst"), U64.withName("src"), U64.withName("len"), U64.withName("mode"), U64.withName("move"));
    /** The {@code arg.pagefault} member of a message: flags, address, and the thread id with THREAD_ID. */
    public static final StructLayout MSG_PAGEFAULT = MemoryLayout.structLayout(
            U64.withName("flags"),
            U64.withName("address"),
            ValueLayout.JAVA_INT.withName("ptid"),
            MemoryLayout.paddingLayout(4));
    /** The {@code arg.remove} member of a message: the removed range {@code [start, end)}. */
    public static final StructLayout MSG_REMOVE =
            MemoryLayout.structLayout(U64.withName("start"), U64.withName("end"), MemoryLayout.paddingLayout(8));
    /** {@code struct uffd_msg}: 32 bytes, packed; {@code arg} is a union of the per-event members. */
    public static final StructLayout MSG = MemoryLayout.structLayout(
            ValueLayout.JAVA_BYTE.withName("event"),
            ValueLayout.JAVA_BYTE.withName("reserved1"),
            ValueLayout.JAVA_SHORT.withName("reserved2"),
            ValueLayout.JAVA_INT.withName("reserved3"),
            MemoryLayout.unionLayout(
                            MSG_PAGEFAULT.withName("pagefault"),
                            MSG_REMOVE.withName("remove"),
                            MemoryLayout.sequenceLayout(3, U64).withName("reserved"))
                    .withName("arg"));

    public static final long USERFAULTFD_IOC_NEW = Ioc.io(UFFDIO, 0x00);
    public static final long UFFDIO_API = Ioc.iowr(UFFDIO, 0x3F, API.byteSize());
    public static final long UFFDIO_REGISTER = Ioc.iowr(UFFDIO, 0x00, REGISTER.byteSize());
    public static final long UFFDIO_UNREGISTER = Ioc.ior(UFFDIO, 0x01, RANGE.byteSize());
    public static final long UFFDIO_WAKE = Ioc.ior(UFFDIO, 0x02, RANGE.byteSize());
    public static final long UFFDIO_COPY = Ioc.iowr(UFFDIO, 0x03, COPY.byteSize());
    public static final long UFFDIO_ZEROPAGE = Ioc.iowr(UFFDIO, 0x04, ZEROPAGE.byteSize());
    public static final long UFFDIO_MOVE = Ioc.iowr(UFFDIO, 0x05, MOVE.byteSize());
    public static final long UFFDIO_WRITEPROTECT = Ioc.iowr(UFFDIO, 0x06, WRITEPROTECT.byteSize());
    public static final long UFFDIO_CONTINUE = Ioc.iowr(UFFDIO, 0x07, CONTINUE.byteSize());
    public static final long UFFDIO_POISON = Ioc.iowr(UFFDIO, 0x08, POISON.byteSize());

    // Registration modes.
    public static final long REGISTER_MODE_MISSING = 1;
    public static final long REGISTER_MODE_WP = 1 << 1;
    public static final long REGISTER_MODE_MINOR = 1 << 2;

    // Mode bits of COPY, ZEROPAGE and CONTINUE.
    public static final long MODE_DONTWAKE = 1;

    // Events.
    public static final int EVENT_PAGEFAULT = 0x12;
    public static final int EVENT_FORK = 0x13;
    public static final int EVENT_REMAP = 0x14;
    public static final int EVENT_REMOVE = 0x15;
    public static final int EVENT_UNMAP = 0x16;

    // Page-fault flags.
    public static final long PAGEFAULT_FLAG_WRITE = 1;
    public static final long PAGEFAULT_FLAG_WP = 1 << 1;
    public static final long PAGEFAULT_FLAG_MINOR = 1 << 2;

    /** Bit positions in the {@code ioctls} masks returned by UFFDIO_API and UFFDIO_REGISTER. */
    public static final int IOCTL_REGISTER = 0,
            IOCTL_UNREGISTER = 1,
            IOCTL_WAKE = 2,
            IOCTL_COPY = 3,
            IOCTL_ZEROPAGE = 4,
            IOCTL_MOVE = 5,
            IOCTL_WRITEPROTECT = 6,
            IOCTL_CONTINUE = 7,
            IOCTL_POISON = 8,
            IOCTL_API = 63;
}
