package dev.gmem.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A memory mapping and its one owner. The mapping is reached through {@link #segment()}, whose
 * lifetime is the mapping's: after {@link #close()} the segment refuses access (it does not point
 * at unmapped memory), and the pages are unmapped exactly once.
 */
public final class Mapping implements AutoCloseable {
    private static final long MAP_FAILED = -1L;

    private final Arena arena;
    private final MemorySegment segment;
    private final String description;

    private Mapping(Arena arena, MemorySegment segment, String description) {
        this.arena = arena;
        this.segment = segment;
        this.description = description;
    }

    /**
     * mmap(2) of {@code length} bytes of {@code fd} from {@code offset}; {@code fd} null maps
     * anonymous memory (add MAP_ANONYMOUS to flags).
     */
    public static Mapping map(Fd fd, long offset, long length, int prot, int flags) throws SyscallException {
        int fdNumber = fd == null ? -1 : fd.number();
        MemorySegment st = Native.callState();
        long address = Native.syscall(st, Sys.MMAP, 0, length, prot, flags, fdNumber, offset);
        String what = (fd == null ? "anonymous" : "fd=" + fdNumber + " " + fd.name()) + ", off=" + offset + ", len="
                + length + ", prot=" + prot + ", flags=0x" + Integer.toHexString(flags);
        if (address == MAP_FAILED) throw new SyscallException("mmap", what, Native.errno(st));
        Arena arena = Arena.ofShared();
        MemorySegment segment = Native.at(address, length, arena, unused -> unmap(address, length));
        return new Mapping(arena, segment, what);
    }

    /** Anonymous private read-write memory, e.g. a source buffer. */
    public static Mapping anonymous(long length) throws SyscallException {
        return map(null, 0, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS);
    }

    /** A shared read-write mapping of the whole of a file of {@code length} bytes. */
    public static Mapping shared(Fd fd, long length) throws SyscallException {
        return map(fd, 0, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED);
    }

    private static void unmap(long address, long length) {
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.MUNMAP, address, length);
        // munmap fails only for arguments that mmap itself returned, so a failure is a bug here.
        if (r != 0)
            throw new AssertionError(new SyscallException(
                    "munmap", "addr=0x" + Long.toHexString(address) + ", len=" + length, Native.errno(st)));
    }

    /** The mapped bytes; refuses access once this mapping is closed. */
    public MemorySegment segment() {
        return segment;
    }

    /** The start address, for the kernel interfaces that take one (userfaultfd ranges, KVM memslots). */
    public long address() {
        return segment.address();
    }

    public long length() {
        return segment.byteSize();
    }

    public boolean isOpen() {
        return arena.scope().isAlive();
    }

    /** mprotect(2) on {@code [offset, offset+length)} of this mapping. */
    public void protect(long offset, long length, int prot) throws SyscallException {
        MemorySegment range = slice(offset, length);
        MemorySegment st = Native.callState();
        long r = Native.syscall(st, Sys.MPROTECT, range, length, prot, 0, 0);
        if (r != 0)
            throw new SyscallException(
                    "mprotect", "off=" + offset + ", len=" + length + ", prot=" + prot, Native.errno(st));
    }

    /** madvise(2) on {@code [offset, offset+length)} of this mapping, e.g. MADV_POPULATE_WRITE. */
    public void advise(long offset, long length, int advice) throws SyscallException {
        int e = Posix.madvise(slice(offset, length), advice);
        if (e != 0)
            throw new SyscallException("madvise", "off=" + offset + ", len=" + length + ", advice=" + advice, e);
    }

    /**
     * mincore(2): one byte per page of {@code [offset, offset+length)}, bit 0 set where the page is
     * resident. {@code pageSize} is the mapping's page size.
     */
    public byte[] residency(long offset, long length, long pageSize) throws SyscallException {
        return residency(slice(offset, length), pageSize);
    }

    /**
     * mincore(2) of any page-aligned range of this process's memory, mapped by gmem or not: one
     * byte per page of {@code pageSize}, bit 0 set where the page is resident. Never faults a page in.
     */
    public static byte[] residency(MemorySegment range, long pageSize) throws SyscallException {
        long length = range.byteSize();
        int pages = Math.toIntExact((length + pageSize - 1) / pageSize);
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment vec = scratch.allocate(pages);
            MemorySegment st = Native.callState();
            long r = Native.syscall(st, Sys.MINCORE, range, length, vec.address(), 0, 0);
            if (r != 0)
                throw new SyscallException(
                        "mincore", "addr=0x" + Long.toHexString(range.address()) + ", len=" + length, Native.errno(st));
            return vec.toArray(ValueLayout.JAVA_BYTE);
        }
    }

    private MemorySegment slice(long offset, long length) {
        if (offset < 0 || length < 0 || offset > segment.byteSize() - length) {
            throw new IndexOutOfBoundsException(
                    "range [" + offset + ", +" + length + ") outside mapping of " + segment.byteSize() + " bytes");
        }
        return segment.asSlice(offset, length);
    }

    /** Unmaps; the segment refuses access from then on. Idempotent. */
    @Override
    public void close() {
        if (!arena.scope().isAlive()) return;
        try {
            arena.close();
        } catch (IllegalStateException e) {
            // Closed by another thread meanwhile: done. Still alive: the segment is in use (for
            // example by a native call on another thread), and the mapping stays; say so.
            if (arena.scope().isAlive()) throw e;
        }
    }

    /**
     * Unmaps, waiting while native calls on other threads still hold the segment (a thread
     * released from a userfault is leaving its call). Tries for up to {@code waitMillis} here, then
     * leaves the rest to a daemon thread named gmem-unmap that retries until the mapping is gone.
     * Never throws. Returns true when the mapping was unmapped before returning.
     */
    public boolean closeEventually(long waitMillis) {
        long deadline = System.nanoTime() + waitMillis * 1_000_000;
        while (true) {
            if (tryClose()) return true;
            if (System.nanoTime() > deadline) break;
            java.util.concurrent.locks.LockSupport.parkNanos(200_000);
        }
        Thread.ofPlatform().name("gmem-unmap").daemon().start(() -> {
            while (!tryClose()) java.util.concurrent.locks.LockSupport.parkNanos(10_000_000);
        });
        return false;
    }

    private boolean tryClose() {
        try {
            close();
            return true;
        } catch (IllegalStateException stillInUse) {
            return false;
        }
    }

    @Override
    public String toString() {
        return "Mapping[0x" + Long.toHexString(segment.address()) + " " + description + "]";
    }
}
