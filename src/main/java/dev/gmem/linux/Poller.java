package dev.gmem.linux;

import static dev.gmem.linux.Native.C_INT;
import static dev.gmem.linux.Native.C_LONG;
import static dev.gmem.linux.Native.C_POINTER;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;

/**
 * poll(2) over a fixed set of descriptors, with its {@code struct pollfd} array allocated once,
 * so a loop that polls allocates nothing. Not thread-safe: one poller per polling thread.
 */
public final class Poller {
    /** {@code struct pollfd { int fd; short events; short revents; }}: 8 bytes. */
    public static final StructLayout POLLFD = MemoryLayout.structLayout(
            ValueLayout.JAVA_INT.withName("fd"),
            ValueLayout.JAVA_SHORT.withName("events"),
            ValueLayout.JAVA_SHORT.withName("revents"));

    private static final long EVENTS = POLLFD.byteOffset(MemoryLayout.PathElement.groupElement("events"));
    private static final long REVENTS = POLLFD.byteOffset(MemoryLayout.PathElement.groupElement("revents"));

    private static final class Poll { // linked on first use: linking costs some 4 ms a function
        static final MethodHandle HANDLE =
                Native.downcall("poll", FunctionDescriptor.of(C_INT, C_POINTER, C_LONG, C_INT));
    }

    private final MemorySegment fds;
    private final int count;

    /** Polls each of {@code descriptors} for {@code events} (POLLIN, POLLOUT, …). */
    public Poller(short events, Fd... descriptors) {
        this.count = descriptors.length;
        this.fds = Arena.ofAuto().allocate(POLLFD, count);
        for (int i = 0; i < count; i++) {
            MemorySegment entry = fds.asSlice(i * POLLFD.byteSize(), POLLFD.byteSize());
            entry.set(ValueLayout.JAVA_INT, 0, descriptors[i].number());
            entry.set(ValueLayout.JAVA_SHORT, EVENTS, events);
        }
    }

    /**
     * Waits until a descriptor is ready or {@code timeoutMillis} passes (-1: no limit). Returns how
     * many descriptors are ready, 0 on time-out. An interrupted wait (EINTR) returns 0.
     */
    public int poll(int timeoutMillis) throws SyscallException {
        MemorySegment st = Native.callState();
        int r;
        try {
            r = (int) Poll.HANDLE.invokeExact(st, fds, (long) count, timeoutMillis);
        } catch (Throwable t) {
            throw Native.unexpected(t);
        }
        if (r >= 0) return r;
        if (Native.errno(st) == Errno.EINTR.number()) return 0;
        throw new SyscallException("poll", "nfds=" + count + ", timeout=" + timeoutMillis, Native.errno(st));
    }

    /** The events reported for descriptor {@code index} by the last {@link #poll}. */
    public short ready(int index) {
        return fds.get(ValueLayout.JAVA_SHORT, index * POLLFD.byteSize() + REVENTS);
    }
}
