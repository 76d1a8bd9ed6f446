package dev.gmem.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An open file descriptor and its one owner: {@link #close()} closes it, once. The calls that act
 * on a descriptor are methods here; each failure raises a {@link SyscallException} naming the call,
 * the descriptor and the key arguments. Calls that the kernel may interrupt before doing any work
 * (EINTR) are restarted.
 *
 * <p>Buffers passed to these calls must be native segments (off-heap memory or mappings).
 */
public final class Fd implements AutoCloseable {
    private static final int CLOSED = -1;
    private static final int EINTR = Errno.EINTR.number();

    private static final int F_DUPFD_CLOEXEC = 1030;
    private static final int AT_FDCWD = -100;

    private final AtomicInteger number;
    private final String name;

    private Fd(int number, String name) {
        this.number = new AtomicInteger(number);
        this.name = name;
    }

    /**
     * Takes ownership of a descriptor number obtained elsewhere (for example returned by an ioctl
     * such as KVM_CREATE_VM, or received over a socket). {@code name} says what it is, for messages.
     */
    public static Fd adopt(int number, String name) {
        if (number < 0) throw new IllegalArgumentException("not a file descriptor: " + number);
        return new Fd(number, name);
    }

    /** open(2). {@code mode} matters only with O_CREAT. */
    public static Fd open(Path path, int flags, int mode) throws SyscallException {
        return open(path, flags, mode, path.toString());
    }

    /** open(2), the descriptor named {@code name} in messages (an output's final path, say, rather than its partial file's). */
    public static Fd open(Path path, int flags, int mode, String name) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cPath = arena.allocateFrom(path.toString());
            MemorySegment st = Native.callState();
            while (true) {
                long fd = Native.syscall(st, Sys.OPENAT, AT_FDCWD, cPath.address(), flags, mode);
                if (fd >= 0) return new Fd((int) fd, name);
                int e = Native.errno(st);
                if (e != EINTR)
                    throw new SyscallException("open", path + ", flags=0" + Integer.toOctalString(flags), e);
            }
        }
    }

    /** memfd_create(2): an anonymous shared-memory file. */
    public static Fd memfd(String name, int flags) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment st = Native.callState();
            long fd = Native.syscall(
                    st, Sys.MEMFD_CREATE, arena.allocateFrom(name).address(), flags);
            if (fd < 0)
                throw new SyscallException(
                        "memfd_create", name + ", flags=0x" + Integer.toHexString(flags), Native.errno(st));
            return new Fd((int) fd, "memfd:" + name);
        }
    }

    /** Adds {@code n} to an eventfd's counter (a write of 8 bytes), waking its pollers. */
    public void eventfdAdd(long n) throws SyscallException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(java.lang.foreign.ValueLayout.JAVA_LONG);
            v.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, n);
            write(v);
        }
    }

    /** pipe2(2) with O_CLOEXEC and {@code flags}: the read end, then the write end. */
    public static Fd[] pipe(int flags) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment ends = arena.allocate(java.lang.foreign.ValueLayout.JAVA_INT, 2);
            MemorySegment st = Native.callState();
            long r = Native.syscall(st, Sys.PIPE2, ends.address(), Linux.O_CLOEXEC | flags);
            if (r < 0) throw new SyscallException("pipe2", "flags=0x" + Integer.toHexString(flags), Native.errno(st));
            return new Fd[] {
                new Fd(ends.getAtIndex(java.lang.foreign.ValueLayout.JAVA_INT, 0), "pipe (read end)"),
                new Fd(ends.getAtIndex(java.lang.foreign.ValueLayout.JAVA_INT, 1), "pipe (write end)")
            };
        }
    }

    /** eventfd(2). */
    public static Fd eventfd(int initialValue, int flags) throws SyscallException {
        MemorySegment st = Native.callState();
        long fd = Native.syscall(st, Sys.EVENTFD2, initialValue, flags);
        if (fd < 0)
            throw new SyscallException(
                    "eventfd", "initval=" + initialValue + ", flags=0x" + Integer.toHexString(flags), Native.errno(st));
        return new Fd((int) fd, "eventfd");
    }

    /** The descriptor number; fails once closed. */
    public int number() {
        int n = number.get();
        if (n == CLOSED) throw new IllegalStateException(name + " is closed");
        return n;
    }

    /** What this descriptor is, for messages: a path, "memfd:NAME", "guest_memfd", … */
    public String name() {
        return name;
    }

    public boolean isOpen() {
        return number.get() != CLOSED;
    }

    /** A second descriptor for the same open file (close-on-exec), with its own owner. */
    public Fd dup() throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        long n = Native.syscall(st, Sys.FCNTL, fd, F_DUPFD_CLOEXEC, 0);
        if (n < 0) throw failure(st, "fcntl F_DUPFD_CLOEXEC", "");
        return new Fd((int) n, name);
    }

    /** fcntl(2) with an int argument, e.g. F_GETFD or F_GETFL. */
    public int fcntl(int command, int argument) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.FCNTL, number(), command, argument);
        if (r < 0) throw failure(st, "fcntl", "cmd=" + command);
        return (int) r;
    }

    /** read(2) into {@code dst}; returns the bytes read (0 at end of file). */
    public long read(MemorySegment dst) throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        while (true) {
            long n = Native.syscall(st, Sys.READ, fd, dst, dst.byteSize(), 0);
            if (n >= 0) return n;
            if (Native.errno(st) != EINTR) throw failure(st, "read", "len=" + dst.byteSize());
        }
    }

    /** write(2) from {@code src}; returns the bytes written. */
    public long write(MemorySegment src) throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        while (true) {
            long n = Native.syscall(st, Sys.WRITE, fd, src, src.byteSize(), 0);
            if (n >= 0) return n;
            if (Native.errno(st) != EINTR) throw failure(st, "write", "len=" + src.byteSize());
        }
    }

    /** pread(2) into {@code dst} from {@code offset}; returns the bytes read (0 at end of file). */
    public long pread(MemorySegment dst, long offset) throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        while (true) {
            long n = Native.syscall(st, Sys.PREAD64, fd, dst, dst.byteSize(), offset);
            if (n >= 0) return n;
            if (Native.errno(st) != EINTR) throw failure(st, "pread", "off=" + offset + ", len=" + dst.byteSize());
        }
    }

    /** pread(2) until {@code dst} is full or the end of the file; returns the bytes read (fewer only at the end of the file). */
    public long preadFully(MemorySegment dst, long offset) throws SyscallException {
        long done = 0;
        long size = dst.byteSize();
        while (done < size) {
            long n = pread(dst.asSlice(done), offset + done);
            if (n == 0) break;
            done += n;
        }
        return done;
    }

    /** pwrite(2) from {@code src} at {@code offset}; returns the bytes written, which may be fewer. */
    public long pwrite(MemorySegment src, long offset) throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        while (true) {
            long n = Native.syscall(st, Sys.PWRITE64, fd, src, src.byteSize(), offset);
            if (n >= 0) return n;
            if (Native.errno(st) != EINTR) throw failure(st, "pwrite", "off=" + offset + ", len=" + src.byteSize());
        }
    }

    /** pwrite(2) until all of {@code src} is written, or a call fails. */
    public void pwriteFully(MemorySegment src, long offset) throws SyscallException {
        long done = 0;
        long size = src.byteSize();
        while (done < size) {
            long n = pwrite(src.asSlice(done), offset + done);
            if (n == 0)
                throw new SyscallException(
                        "pwrite", "fd=" + number() + ", off=" + (offset + done) + ": wrote 0 bytes", Errno.EIO);
            done += n;
        }
    }

    /** lseek(2); with SEEK_DATA or SEEK_HOLE an ENXIO means "no data (or hole) at or after offset". */
    public long lseek(long offset, int whence) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.LSEEK, number(), offset, whence);
        if (r < 0) throw failure(st, "lseek", "off=" + offset + ", whence=" + whence);
        return r;
    }

    /**
     * lseek(2) with SEEK_DATA: the offset of the first data at or after {@code offset}, or -1 when
     * there is none (ENXIO, the kernel's answer for "no data after here", is an answer, not a
     * failure: a populate-once write asks it of every batch, and a pushed 512 MiB threw it some
     * 4 500 times, each with a stack trace and a message).
     */
    public long seekData(long offset) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.LSEEK, number(), offset, Linux.SEEK_DATA);
        if (r >= 0) return r;
        if (Native.errno(st) == Errno.ENXIO.number()) return -1;
        throw failure(st, "lseek", "off=" + offset + ", whence=SEEK_DATA");
    }

    /**
     * The file's data as [start, end) pairs of offsets below {@code size}, from SEEK_DATA/SEEK_HOLE:
     * for a memfd, the pages it holds (in memory or in swap). Never reads or faults in anything.
     */
    public long[] dataExtents(long size) throws SyscallException {
        long[] out = new long[16];
        int n = 0;
        long at = 0;
        while (at < size) {
            long data = seekData(at);
            if (data < 0 || data >= size) break;
            long hole = lseek(data, Linux.SEEK_HOLE);
            if (n + 2 > out.length) out = java.util.Arrays.copyOf(out, out.length * 2);
            out[n++] = data;
            out[n++] = Math.min(hole, size);
            at = hole;
        }
        return java.util.Arrays.copyOf(out, n);
    }

    /** ftruncate(2). */
    public void truncate(long size) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.FTRUNCATE, number(), size);
        if (r < 0) throw failure(st, "ftruncate", "size=" + size);
    }

    /** fallocate(2) with FALLOC_FL_* {@code mode}. */
    public void fallocate(int mode, long offset, long length) throws SyscallException {
        int fd = number();
        MemorySegment st = Native.callState();
        while (true) {
            long r = Native.syscall(st, Sys.FALLOCATE, fd, mode, offset, length);
            if (r == 0) return;
            if (Native.errno(st) != EINTR) {
                throw failure(
                        st, "fallocate", "mode=0x" + Integer.toHexString(mode) + ", off=" + offset + ", len=" + length);
            }
        }
    }

    /**
     * ioctl(2) with a pointer argument; returns the ioctl's non-negative result.
     * {@code what} names the request in messages, e.g. "KVM_CREATE_GUEST_MEMFD".
     */
    public int ioctl(String what, long request, MemorySegment argument) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.IOCTL, number(), request, Native.address(argument));
        Reference.reachabilityFence(argument); // an argument of gmem's own, for the kernel to read
        if (r < 0) throw failure(st, "ioctl " + what, "req=0x" + Long.toHexString(request));
        return (int) r;
    }

    /**
     * ioctl(2) with a pointer argument, for requests that never block and finish in microseconds
     * (a userfaultfd COPY or CONTINUE of a few pages): linked as a critical call, which saves the
     * thread-state transition. Never use it for KVM_RUN, or for a request on a blocking device.
     */
    public int ioctlShort(String what, long request, MemorySegment argument) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.criticalSyscall(st, Sys.IOCTL, number(), request, Native.address(argument));
        Reference.reachabilityFence(argument); // an argument of gmem's own, for the kernel to read
        if (r < 0) throw failure(st, "ioctl " + what, "req=0x" + Long.toHexString(request));
        return (int) r;
    }

    /** ioctl(2) with an integer argument; returns the ioctl's non-negative result. */
    public int ioctl(String what, long request, long argument) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.IOCTL, number(), request, argument);
        if (r < 0) throw failure(st, "ioctl " + what, "req=0x" + Long.toHexString(request) + ", arg=" + argument);
        return (int) r;
    }

    private SyscallException failure(MemorySegment st, String call, String arguments) {
        String fd = "fd=" + number.get() + (name.isEmpty() ? "" : " " + name);
        return new SyscallException(call, arguments.isEmpty() ? fd : fd + ", " + arguments, Native.errno(st));
    }

    /** Closes the descriptor; later calls are no-ops. A failing close(2) is reported (EIO on some filesystems). */
    @Override
    public void close() throws SyscallException {
        int n = number.getAndSet(CLOSED);
        if (n == CLOSED) return;
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.CLOSE, n);
        // EINTR from close on Linux still released the descriptor: never retry it.
        if (r < 0 && Native.errno(st) != EINTR)
            throw new SyscallException("close", "fd=" + n + " " + name, Native.errno(st));
    }

    /** Closes without reporting errors, for clean-up paths that already carry an exception. */
    public void closeQuietly() {
        try {
            close();
        } catch (SyscallException ignored) {
            // The descriptor is released whatever close(2) returned.
        }
    }

    @Override
    public String toString() {
        return "Fd[" + number.get() + " " + name + "]";
    }
}
