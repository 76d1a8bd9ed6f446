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
 */
final class Native {
    static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;
    static final ValueLayout.OfShort C_SHORT = ValueLayout.JAVA_SHORT;
    static final ValueLayout.OfLong C_SIZE_T = ValueLayout.JAVA_LONG;
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
