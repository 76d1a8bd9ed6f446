package dev.gmem.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;

/**
 * poll(2) over a fixed set of descriptors (as ppoll(2), the call both architectures have), with
 * its {@code struct pollfd} array and time-out allocated once, so a loop that polls allocates
 * nothing. Not thread-safe: one poller per polling thread.
 */
public final class Poller {
    /** {@code struct pollfd { int fd; short events; short revents; }}: 8 bytes. */
    public static final StructLayout POLLFD = MemoryLayout.structLayout(
            ValueLayout.JAVA_INT.withName("fd"),
            ValueLayout.JAVA_SHORT.withName("events"),
            ValueLayout.JAVA_SHORT.withName("revents"));

    private static final long EVENTS = POLLFD.byteOffset(MemoryLayout.PathElement.groupElement("events"));
    private static final long REVENTS = POLLFD.byteOffset(MemoryLayout.PathElement.groupElement("revents"));

    /** The kernel's signal set size (ppoll checks it only with a mask; none is passed). */
    private static final long SIGSET_SIZE = 8;

    private final MemorySegment fds;
    /** {@code struct timespec { long tv_sec; long tv_nsec; }}. */
    private final MemorySegment timeout;

    private final int count;

    /** Polls each of {@code descriptors} for {@code events} (POLLIN, POLLOUT, …). */
    public Poller(short events, Fd... descriptors) {
        this.count = descriptors.length;
        Arena arena = Arena.ofAuto();
        this.fds = arena.allocate(POLLFD, count);
        this.timeout = arena.allocate(ValueLayout.JAVA_LONG, 2);
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
        long limit = 0; // none
        if (timeoutMillis >= 0) {
            timeout.setAtIndex(ValueLayout.JAVA_LONG, 0, timeoutMillis / 1000);
            timeout.setAtIndex(ValueLayout.JAVA_LONG, 1, (timeoutMillis % 1000) * 1_000_000L);
            limit = timeout.address();
        }
        // the time-out is freed with the array, which the call holds
        long r = Native.syscall(st, Sys.PPOLL, fds, count, limit, 0, SIGSET_SIZE);
        if (r >= 0) return (int) r;
        if (Native.errno(st) == Errno.EINTR.number()) return 0;
        throw new SyscallException("poll", "nfds=" + count + ", timeout=" + timeoutMillis, Native.errno(st));
    }

    /** The events reported for descriptor {@code index} by the last {@link #poll}. */
    public short ready(int index) {
        return fds.get(ValueLayout.JAVA_SHORT, index * POLLFD.byteSize() + REVENTS);
    }
}
