package dev.gmem.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

/**
 * The one place that links C functions. Every downcall captures errno into a per-thread buffer,
 * so concurrent calls on different threads never see each other's errno, and errno is read only
 * after a call has failed (a successful call does not clear it).
 *
 * <p>System calls all go through {@link #syscall}: the C library's {@code syscall(3)}, linked in
 * one shape (once more as a critical call, for the fault path). Linking is what costs at start: a
 * downcall per C function took a few milliseconds each on its first use, a restore used about
 * fifteen, and each further shape of {@code syscall} cost about 5 ms; it now links one. A call's
 * buffer is a segment argument, which the linker
 * checks and holds for the call; only addresses inside a structure (a message's data, a
 * userfaultfd copy's source) are raw, and their callers keep that memory reachable across the
 * call.
 */
final class Native {
    static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;
    static final java.lang.foreign.AddressLayout C_POINTER = ValueLayout.ADDRESS;

    private static final Linker LINKER = Linker.nativeLinker();
    private static final SymbolLookup LIBC = LINKER.defaultLookup();
    private static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE_ERRNO = Linker.Option.captureCallState("errno");

    /** One capture buffer per thread, freed with the thread. */
    private static final ThreadLocal<MemorySegment> CALL_STATE =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(CAPTURE_LAYOUT));

    private Native() {}

    /**
     * {@code long syscall(long number, ...)} in one shape: its first two arguments pointers, the
     * other four integers. Every call fits it. A memory range comes first (madvise, mprotect, ppoll)
     * and a descriptor's buffer second (read, pwrite, sendmsg); an integer in either place travels
     * as a zero-length segment at that value (a register holds the same bits either way). A buffer
     * passed as a segment is the linker's to check: it refuses heap memory and memory already
     * freed, and holds the segment's arena open for the call, so memory being unmapped by another
     * thread is never handed to the kernel (closing it fails while the call runs).
     */
    private static final FunctionDescriptor SHAPE =
            FunctionDescriptor.of(C_LONG, C_LONG, C_POINTER, C_POINTER, C_LONG, C_LONG, C_LONG, C_LONG);

    /** The critical form's shape: integers only (its calls pass no buffer the linker should hold). */
    private static final FunctionDescriptor INTEGERS =
            FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG);

    // each linked on first use: a process links only the forms it calls (an eager restore, one)
    private static final class Call {
        static final MethodHandle HANDLE = downcall("syscall", SHAPE, false, 1);
    }

    private static final class CriticalIntegers {
        static final MethodHandle HANDLE = downcall("syscall", INTEGERS, true, 1);
    }

    /** An integer argument in a pointer's place. */
    private static MemorySegment word(long value) {
        return MemorySegment.ofAddress(value);
    }

    /**
     * System call {@code call}: its result, or -1 with errno in {@code state} (see {@link #errno}).
     * Arguments it does not take are passed as 0 by the shorter forms below.
     */
    static long syscall(MemorySegment state, Sys call, long a0, long a1, long a2, long a3, long a4, long a5) {
        try {
            return (long) Call.HANDLE.invokeExact(state, call.number(), word(a0), word(a1), a2, a3, a4, a5);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    static long syscall(MemorySegment state, Sys call) {
        return syscall(state, call, 0, 0, 0, 0, 0, 0);
    }

    static long syscall(MemorySegment state, Sys call, long a0) {
        return syscall(state, call, a0, 0, 0, 0, 0, 0);
    }

    static long syscall(MemorySegment state, Sys call, long a0, long a1) {
        return syscall(state, call, a0, a1, 0, 0, 0, 0);
    }

    static long syscall(MemorySegment state, Sys call, long a0, long a1, long a2) {
        return syscall(state, call, a0, a1, a2, 0, 0, 0);
    }

    static long syscall(MemorySegment state, Sys call, long a0, long a1, long a2, long a3) {
        return syscall(state, call, a0, a1, a2, a3, 0, 0);
    }

    static long syscall(MemorySegment state, Sys call, long a0, long a1, long a2, long a3, long a4) {
        return syscall(state, call, a0, a1, a2, a3, a4, 0);
    }

    /** {@code call(a0, buffer, a2, a3)}: a descriptor's call on a buffer (read, pwrite, sendmsg). */
    static long syscall(MemorySegment state, Sys call, long a0, MemorySegment buffer, long a2, long a3) {
        try {
            return (long) Call.HANDLE.invokeExact(state, call.number(), word(a0), buffer, a2, a3, 0L, 0L);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    /** {@code call(range, a1, a2, a3, a4)}: a call on a range of memory (madvise, mlock, mincore, ppoll). */
    static long syscall(MemorySegment state, Sys call, MemorySegment range, long a1, long a2, long a3, long a4) {
        try {
            return (long) Call.HANDLE.invokeExact(state, call.number(), range, word(a1), a2, a3, a4, 0L);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    /*
     * The critical form, for calls that never block and finish in microseconds (a userfaultfd COPY
     * or CONTINUE of a few pages, on the fault path): the thread stays in Java state, which saves the
     * transition but stalls safepoints for the call's duration. Not for munmap: unmapping a large
     * populated range frees its pages, for milliseconds; and a short command that links a form it
     * does not need pays milliseconds for it at start.
     */

    static long criticalSyscall(MemorySegment state, Sys call, long a0, long a1, long a2) {
        try {
            return (long) CriticalIntegers.HANDLE.invokeExact(state, call.number(), a0, a1, a2, 0L, 0L, 0L);
        } catch (Throwable t) {
            throw unexpected(t);
        }
    }

    /**
     * The address of native memory {@code segment}, for a structure or an ioctl argument that
     * carries one (the kernel reads it there); a heap segment has none. The caller keeps the
     * memory reachable across the call.
     */
    static long address(MemorySegment segment) {
        if (!segment.isNative()) throw new IllegalArgumentException("only native memory can be passed to the kernel");
        return segment.address();
    }

    /**
     * A handle for a C function whose first Java argument is the errno capture buffer.
     *
     * @param critical true only for short calls that never block (it keeps the thread in Java
     *                 state and so stalls safepoints for the duration of the call)
     * @param firstVariadic index of the first variadic parameter, or -1 for a fixed-arity function
     */
    @SuppressWarnings("restricted")
    static MethodHandle downcall(String name, FunctionDescriptor descriptor, boolean critical, int firstVariadic) {
        MemorySegment symbol =
                LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("C library has no function " + name));
        java.util.List<Linker.Option> options = new java.util.ArrayList<>();
        options.add(CAPTURE_ERRNO);
        if (critical) options.add(Linker.Option.critical(false));
        if (firstVariadic >= 0) options.add(Linker.Option.firstVariadicArg(firstVariadic));
        return LINKER.downcallHandle(symbol, descriptor, options.toArray(Linker.Option[]::new));
    }

    static MethodHandle downcall(String name, FunctionDescriptor descriptor) {
        return downcall(name, descriptor, false, -1);
    }

    /** A handle for a C function that cannot fail and does not set errno. */
    @SuppressWarnings("restricted")
    static MethodHandle plainDowncall(String name, FunctionDescriptor descriptor) {
        MemorySegment symbol =
                LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError("C library has no function " + name));
        return LINKER.downcallHandle(symbol, descriptor);
    }

    /** This thread's errno capture buffer, passed as the first argument of every downcall. */
    static MemorySegment callState() {
        return CALL_STATE.get();
    }

    /** errno as captured by the last failed call that used {@code state}. */
    static int errno(MemorySegment state) {
        return (int) ERRNO.get(state, 0L);
    }

    /** A segment of {@code length} bytes at a native address, with no lifetime of its own. */
    @SuppressWarnings("restricted")
    static MemorySegment at(long address, long length) {
        return MemorySegment.ofAddress(address).reinterpret(length);
    }

    /** A segment at a native address whose lifetime is {@code arena}'s; {@code cleanup} runs on close. */
    @SuppressWarnings("restricted")
    static MemorySegment at(
            long address, long length, Arena arena, java.util.function.Consumer<MemorySegment> cleanup) {
        return MemorySegment.ofAddress(address).reinterpret(length, arena, cleanup);
    }

    /** A downcall threw something other than what its Java signature allows: a bug, never an OS error. */
    static AssertionError unexpected(Throwable t) {
        if (t instanceof Error e) throw e;
        return new AssertionError("native call failed unexpectedly", t);
    }
}
