package dev.gmem.memory;

import dev.gmem.linux.Mapping;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A host mapping of part of a guest memory file, tracked by it: private pages are PROT_NONE in
 * {@link #segment()} and refused by the checked accessors with a {@link PrivateMemoryException}.
 * Offsets given to the accessors are relative to the start of this mapping.
 */
public final class HostMapping implements AutoCloseable {
    private final AbstractGuestMemory memory;
    private final Mapping mapping;
    private final long fileOffset;

    HostMapping(AbstractGuestMemory memory, Mapping mapping, long fileOffset) {
        this.memory = memory;
        this.mapping = mapping;
        this.fileOffset = fileOffset;
    }

    /**
     * The raw mapping. Touching a private page through it kills the process (the page is
     * PROT_NONE); use the checked accessors unless the pages are known to be shared.
     */
    public MemorySegment segment() {
        return mapping.segment();
    }

    /** Where in the file this mapping starts. */
    public long fileOffset() {
        return fileOffset;
    }

    public long length() {
        return mapping.length();
    }

    /** The host address of {@code offset} within this mapping, for userfaultfd ranges. */
    public long address(long offset) {
        return mapping.address() + offset;
    }

    /** madvise(2) on {@code [offset, offset+length)} of this mapping, e.g. MADV_POPULATE_WRITE. */
    public void advise(long offset, long length, int advice) throws dev.gmem.linux.SyscallException {
        mapping.advise(offset, length, advice);
    }

    Mapping mapping() {
        return mapping;
    }

    AbstractGuestMemory memory() {
        return memory;
    }

    /** Copies {@code destination.byteSize()} bytes from {@code offset}; fails on a private page. */
    public void read(long offset, MemorySegment destination) throws PrivateMemoryException {
        memory.checkedAccess(
                this,
                offset,
                destination.byteSize(),
                () -> MemorySegment.copy(mapping.segment(), offset, destination, 0, destination.byteSize()));
    }

    /** Copies {@code source} to {@code offset}; fails on a private page. */
    public void write(long offset, MemorySegment source) throws PrivateMemoryException {
        memory.checkedAccess(
                this,
                offset,
                source.byteSize(),
                () -> MemorySegment.copy(source, 0, mapping.segment(), offset, source.byteSize()));
    }

    public long getLong(long offset) throws PrivateMemoryException {
        long[] v = new long[1];
        memory.checkedAccess(
                this, offset, 8, () -> v[0] = mapping.segment().get(ValueLayout.JAVA_LONG_UNALIGNED, offset));
        return v[0];
    }

    public void setLong(long offset, long value) throws PrivateMemoryException {
        memory.checkedAccess(
                this, offset, 8, () -> mapping.segment().set(ValueLayout.JAVA_LONG_UNALIGNED, offset, value));
    }

    public byte getByte(long offset) throws PrivateMemoryException {
        byte[] v = new byte[1];
        memory.checkedAccess(this, offset, 1, () -> v[0] = mapping.segment().get(ValueLayout.JAVA_BYTE, offset));
        return v[0];
    }

    public void setByte(long offset, byte value) throws PrivateMemoryException {
        memory.checkedAccess(this, offset, 1, () -> mapping.segment().set(ValueLayout.JAVA_BYTE, offset, value));
    }

    /**
     * Which pages of {@code [offset, offset+length)} are in memory (mincore(2)): one byte per page,
     * bit 0 set where the page is resident. For a shared file mapping that is the file's page
     * cache, populated pages included whether or not this mapping touched them.
     */
    public byte[] residency(long offset, long length) throws dev.gmem.linux.SyscallException {
        return mapping().residency(offset, length, memory.pageSize());
    }

    public boolean isOpen() {
        return mapping.isOpen();
    }

    /**
     * Unmaps and stops tracking, waiting while native calls on other threads still hold the mapping
     * (threads just released from userfaults); see {@link Mapping#closeEventually}. Never throws.
     */
    public boolean closeEventually(long waitMillis) {
        return memory.closeMappingEventually(this, waitMillis);
    }

    /** Unmaps and stops tracking. Idempotent. */
    @Override
    public void close() {
        memory.closeMapping(this);
    }
}
