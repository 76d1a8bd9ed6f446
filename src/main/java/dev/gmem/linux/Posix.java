package dev.gmem.linux;

import static dev.gmem.linux.Native.C_INT;
import static dev.gmem.linux.Native.C_LONG;
import static dev.gmem.linux.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;

/** Process- and system-wide calls that take no descriptor. */
public final class Posix {
    private static final class Memcmp { // linked on first use: linking costs some 4 ms a function
        static final MethodHandle HANDLE =
                Native.plainDowncall("memcmp", FunctionDescriptor.of(C_INT, C_POINTER, C_POINTER, C_LONG));
    }

    private static final class Memcpy { // linked on first use: linking costs some 4 ms a function
        static final MethodHandle HANDLE =
                Native.plainDowncall("memcpy", FunctionDescriptor.of(C_POINTER, C_POINTER, C_POINTER, C_LONG));
    }

    private static final class Sysconf { // linked on first use: linking costs some 4 ms a function
        static final MethodHandle HANDLE = Native.downcall("sysconf", FunctionDescriptor.of(C_LONG, C_INT));
    }

    private static final int UTSNAME_FIELD = 65;

    private static final long PAGE_SIZE = pageSizeOfThisProcess();

    private Posix() {}

    /** The fields of uname(2). */
    public record Uname(String sysname, String nodename, String release, String version, String machine) {}

    /** System call {@code call} with integer arguments; fails naming it and them. */
    static long syscall(Sys call, long... args) throws SyscallException {
        if (args.length > 6) throw new IllegalArgumentException("a system call takes at most 6 arguments");
        long[] a = java.util.Arrays.copyOf(args, 6);
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, call, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (r < 0) throw new SyscallException(call.call(), java.util.Arrays.toString(args), Native.errno(st));
        return r;
    }

    /** userfaultfd(2), which the C library does not wrap: a new userfaultfd's number. */
    public static int userfaultfd(int flags) throws SyscallException {
        return (int) syscall(Sys.USERFAULTFD, flags);
    }

    /**
     * The page size the kernel gave this process (AT_PAGESZ in its auxiliary vector), read from
     * /proc/self/auxv rather than through sysconf(3): a C function of its own to link on every
     * command's start; sysconf where /proc is not mounted.
     */
    private static long pageSizeOfThisProcess() {
        try {
            java.nio.ByteBuffer auxv = java.nio.ByteBuffer.wrap(
                            java.nio.file.Files.readAllBytes(java.nio.file.Path.of("/proc/self/auxv")))
                    .order(java.nio.ByteOrder.nativeOrder());
            while (auxv.remaining() >= 16) {
                long type = auxv.getLong();
                long value = auxv.getLong();
                if (type == AT_PAGESZ) return value;
                if (type == 0) break; // AT_NULL ends the vector
            }
        } catch (java.io.IOException e) {
            // no /proc: ask the C library
        }
        return sysconf(Linux.SC_PAGESIZE);
    }

    private static final long AT_PAGESZ = 6;

    static long sysconf(int name) {
        MemorySegment st = Native.callState();
        try {
            return (long) Sysconf.HANDLE.invokeExact(st, name);
        } catch (Throwable t) {
            throw Native.unexpected(t);
        }
    }

    /** The base page size, e.g. 4096. */
    public static long pageSize() {
        return PAGE_SIZE;
    }

    /** CPUs online now. */
    public static int onlineCpus() {
        return (int) sysconf(Linux.SC_NPROCESSORS_ONLN);
    }

    /** mlock(2) of {@code range}: its pages stay resident and mapped (RLIMIT_MEMLOCK bounds it without CAP_IPC_LOCK). */
    public static void mlock(MemorySegment range) throws SyscallException {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.MLOCK, range, range.byteSize(), 0, 0, 0);
        if (r != 0) throw new SyscallException("mlock", "len=" + range.byteSize(), Native.errno(st));
    }

    /**
     * madvise(2) over {@code range}, whose address and size must be page-aligned. Returns 0, or the
     * errno when the kernel refuses (callers that probe, like {@link #readablePrefix}, need no exception).
     */
    static int madvise(MemorySegment range, int advice) {
        MemorySegment st = Native.callState();
        while (true) {
            long r = Native.syscall(st, Sys.MADVISE, range, range.byteSize(), advice, 0, 0);
            if (r == 0) return 0;
            int e = Native.errno(st);
            if (e != Errno.EINTR.number()) return e;
        }
    }

    /**
     * How many bytes from the start of {@code source} can be read without a fault that would kill
     * the process (an unmapped or PROT_NONE page): all of it for heap memory. Native memory is
     * checked page by page with MADV_POPULATE_READ, which also faults the pages in, so a copy that
     * follows pays for nothing twice. Used before copying from memory of unknown provenance in Java,
     * where the kernel would answer EFAULT but the JVM would crash.
     */
    public static long readablePrefix(MemorySegment source) {
        if (!source.isNative() || source.byteSize() == 0) return source.byteSize();
        long start = source.address() & -PAGE_SIZE;
        long end = (source.address() + source.byteSize() + PAGE_SIZE - 1) & -PAGE_SIZE;
        if (madvise(Native.at(start, end - start), Linux.MADV_POPULATE_READ) == 0) return source.byteSize();
        // Find the first unreadable page by bisection over pages.
        long lo = start; // [start, lo) is readable
        long hi = end; // some page in [lo, hi) is not
        while (hi - lo > PAGE_SIZE) {
            long mid = lo + (((hi - lo) / PAGE_SIZE) / 2) * PAGE_SIZE;
            if (madvise(Native.at(lo, mid - lo), Linux.MADV_POPULATE_READ) == 0) lo = mid;
            else hi = mid;
        }
        return Math.max(0, lo - source.address());
    }

    /** uname(2). */
    public static Uname uname() throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(UTSNAME_FIELD * 6L);
            MemorySegment st = Native.callState();
            long r = Native.syscall(st, Sys.UNAME, buf.address());
            if (r != 0) throw new SyscallException("uname", "", Native.errno(st));
            return new Uname(field(buf, 0), field(buf, 1), field(buf, 2), field(buf, 3), field(buf, 4));
        }
    }

    private static String field(MemorySegment buf, int index) {
        return buf.asSlice((long) index * UTSNAME_FIELD, UTSNAME_FIELD).getString(0, StandardCharsets.UTF_8);
    }

    /**
     * Compares {@code length} bytes of {@code a} and {@code b} in C ({@code memcmp}), and returns
     * the offset of the first difference, or -1 when they are equal.
     *
     * <p>Use this (and {@link #copy}) to touch memory that may block on a userfaultfd fault served
     * by a thread of this same JVM. A Java thread that blocks on a fault inside Java code cannot
     * reach a safepoint; the next garbage collection then waits for it, and the thread serving the
     * fault may be waiting for that collection. A thread blocked inside a C call is at a safepoint
     * already, so nothing waits for it.
     */
    public static long mismatch(MemorySegment a, MemorySegment b, long length) {
        java.util.Objects.checkFromIndexSize(0, length, a.byteSize());
        java.util.Objects.checkFromIndexSize(0, length, b.byteSize());
        if (!a.isNative() || !b.isNative()) throw new IllegalArgumentException("native memory only");
        int r;
        try {
            r = (int) Memcmp.HANDLE.invokeExact(a, b, length);
        } catch (Throwable t) {
            throw Native.unexpected(t);
        }
        // equal, or the pages are now present: the Java comparison below cannot block
        return r == 0 ? -1 : MemorySegment.mismatch(a, 0, length, b, 0, length);
    }

    /** Copies {@code length} bytes from {@code source} to {@code target} in C ({@code memcpy}); see {@link #mismatch} for why. */
    public static void copy(MemorySegment source, MemorySegment target, long length) {
        java.util.Objects.checkFromIndexSize(0, length, source.byteSize());
        java.util.Objects.checkFromIndexSize(0, length, target.byteSize());
        if (!source.isNative() || !target.isNative()) throw new IllegalArgumentException("native memory only");
        try {
            MemorySegment ignored = (MemorySegment) Memcpy.HANDLE.invokeExact(target, source, length);
        } catch (Throwable t) {
            throw Native.unexpected(t);
        }
    }

    /**
     * Sets the calling thread's nice value (setpriority(2) on its thread id: on Linux each thread
     * has its own), for background work that must yield the CPU to latency-bound threads of the
     * same process: a thread at nice 10 gets about a tenth of a core that a nice-0 thread also wants.
     * Raising it needs no privilege; lowering it below the current value does.
     */
    public static void setThreadNice(int nice) throws SyscallException {
        syscall(Sys.SETPRIORITY, PRIO_PROCESS, threadId(), nice);
    }

    /** The calling thread's nice value. */
    public static int threadNice() throws SyscallException {
        return 20 - (int) syscall(Sys.GETPRIORITY, PRIO_PROCESS, threadId()); // the raw call returns 20 - nice
    }

    private static final long PRIO_PROCESS = 0;

    /** The kernel's id of the calling thread (gettid(2)). */
    public static int threadId() {
        try {
            return (int) syscall(Sys.GETTID);
        } catch (SyscallException e) {
            throw new AssertionError("gettid cannot fail", e);
        }
    }

    /** This process's id. */
    public static int processId() {
        return (int) ProcessHandle.current().pid();
    }

    /**
     * Sends {@code signal} to one thread of this process (tgkill(2)): to interrupt a blocking call
     * in it, which then fails with EINTR. The signal must be one this JVM handles harmlessly
     * ({@link Linux#SIGPIPE}: HotSpot's handler ignores it).
     */
    public static void signalThread(int threadId, int signal) throws SyscallException {
        syscall(Sys.TGKILL, processId(), threadId, signal);
    }

    /**
     * Whether descriptor {@code fd} of this process (0, 1, 2: the standard streams) is a terminal:
     * whether it answers TCGETS, as isatty(3) asks it.
     */
    public static boolean isTerminal(int fd) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment termios = arena.allocate(64); // the kernel's struct termios is 36 bytes
            return Native.syscall(Native.callState(), Sys.IOCTL, fd, TCGETS, termios.address()) == 0;
        }
    }

    private static final long TCGETS = 0x5401;
}
