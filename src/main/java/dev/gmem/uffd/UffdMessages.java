package dev.gmem.uffd;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** Readers for the {@code struct uffd_msg} records that {@link Userfaultfd#read} fills in. */
public final class UffdMessages {
    private static final long SIZE = UffdAbi.MSG.byteSize();

    private UffdMessages() {}

    /** The event code of message {@code i}: UffdAbi.EVENT_*. */
    public static int event(MemorySegment buffer, int i) {
        return Byte.toUnsignedInt(buffer.get(ValueLayout.JAVA_BYTE, i * SIZE));
    }

    /** PAGEFAULT: the flags (PAGEFAULT_FLAG_WRITE, _WP, _MINOR). */
    public static long faultFlags(MemorySegment buffer, int i) {
        return buffer.get(ValueLayout.JAVA_LONG, i * SIZE + 8);
    }

    /** PAGEFAULT: the faulting address (page-aligned unless EXACT_ADDRESS was negotiated). */
    public static long faultAddress(MemorySegment buffer, int i) {
        return buffer.get(ValueLayout.JAVA_LONG, i * SIZE + 16);
    }

    /** PAGEFAULT with THREAD_ID: the faulting thread's id. */
    public static int faultThread(MemorySegment buffer, int i) {
        return buffer.get(ValueLayout.JAVA_INT, i * SIZE + 24);
    }

    /** REMOVE: the first address of the removed range. */
    public static long removeStart(MemorySegment buffer, int i) {
        return buffer.get(ValueLayout.JAVA_LONG, i * SIZE + 8);
    }

    /** REMOVE: the end (exclusive) of the removed range. */
    public static long removeEnd(MemorySegment buffer, int i) {
        return buffer.get(ValueLayout.JAVA_LONG, i * SIZE + 16);
    }
}
