package dev.gmem.uffd;

import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;

/**
 * Readers for the {@code struct uffd_msg} records that {@link Userfaultfd#read} fills in, through
 * the fields of {@link UffdAbi#MSG}: message {@code i} of a buffer is the record at {@code i * 32}.
 */
public final class UffdMessages {
    private static final long SIZE = UffdAbi.MSG.byteSize();
    private static final VarHandle EVENT = UffdAbi.MSG.varHandle(PathElement.groupElement("event"));
    private static final VarHandle FAULT_FLAGS = field("pagefault", "flags");
    private static final VarHandle FAULT_ADDRESS = field("pagefault", "address");
    private static final VarHandle FAULT_THREAD = field("pagefault", "ptid");
    private static final VarHandle REMOVE_START = field("remove", "start");
    private static final VarHandle REMOVE_END = field("remove", "end");

    private UffdMessages() {}

    private static VarHandle field(String member, String name) {
        return UffdAbi.MSG.varHandle(
                PathElement.groupElement("arg"), PathElement.groupElement(member), PathElement.groupElement(name));
    }

    /** The event code of message {@code i}: UffdAbi.EVENT_*. */
    public static int event(MemorySegment buffer, int i) {
        return Byte.toUnsignedInt((byte) EVENT.get(buffer, i * SIZE));
    }

    /** PAGEFAULT: the flags (PAGEFAULT_FLAG_WRITE, _WP, _MINOR). */
    public static long faultFlags(MemorySegment buffer, int i) {
        return (long) FAULT_FLAGS.get(buffer, i * SIZE);
    }

    /** PAGEFAULT: the faulting address (page-aligned unless EXACT_ADDRESS was negotiated). */
    public static long faultAddress(MemorySegment buffer, int i) {
        return (long) FAULT_ADDRESS.get(buffer, i * SIZE);
    }

    /** PAGEFAULT with THREAD_ID: the faulting thread's id. */
    public static int faultThread(MemorySegment buffer, int i) {
        return (int) FAULT_THREAD.get(buffer, i * SIZE);
    }

    /** REMOVE: the first address of the removed range. */
    public static long removeStart(MemorySegment buffer, int i) {
        return (long) REMOVE_START.get(buffer, i * SIZE);
    }

    /** REMOVE: the end (exclusive) of the removed range. */
    public static long removeEnd(MemorySegment buffer, int i) {
        return (long) REMOVE_END.get(buffer, i * SIZE);
    }
}
