package dev.gmem.memory;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.kvm.KvmAbi;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * A guest memory file: the contract of KVM's guest_memfd (see guest_memfd-spec.md), with
 * populate-once {@code write()} (the v5 semantics), fallocate, shared host mappings, per-page
 * shared/private attributes with in-place conversion, and userfaultfd registration.
 *
 * <p>Errors mirror the kernel's: a {@link dev.gmem.linux.SyscallException} with the errno the
 * kernel would give (EINVAL, ENOSPC, EFAULT, EOPNOTSUPP, ENODEV), a {@link ConversionBusyException}
 * for a pinned page, and an {@link UnsupportedFeatureException} where a backend cannot provide a
 * feature on this host. All methods are safe to call from many threads at once; every page is
 * populated at most once between two hole punches, whoever races for it.
 */
public interface GuestMemory extends AutoCloseable {
    /** The attribute bit of a private page, as in KVM. */
    long PRIVATE = KvmAbi.KVM_MEMORY_ATTRIBUTE_PRIVATE;

    /** The two implementations. */
    enum Backend {
        /** A real KVM guest_memfd, native where the kernel can. */
        KERNEL,
        /** memfd, userfaultfd and mprotect: the whole contract on any Linux. */
        MEMFD;

        public String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }
    }

    Backend backend();

    /** The size in bytes, fixed at creation. */
    long size();

    long pageSize();

    /** The creation flags: a mask of {@link GuestMemfdFlag} bits. */
    long flags();

    default boolean has(GuestMemfdFlag flag) {
        return (flags() & flag.bit()) != 0;
    }

    /** How this backend provides each feature on this host, with reasons. */
    MemoryCapabilities capabilities();

    /** {@code capabilities().writePath()}, which a backend may know without probing the rest (a restore needs only this). */
    default MemoryCapabilities.WritePath writePath() {
        return capabilities().writePath();
    }

    /** {@code capabilities().write()}, as {@link #writePath}. */
    default String writeDescription() {
        return capabilities().write();
    }

    /**
     * Populates pages from {@code source} at {@code offset}, as write()/pwrite on guest_memfd does.
     * Offset and length must be page-aligned and inside the file (else EINVAL). The write stops at
     * the first page already populated and returns the bytes written before it; when the first page
     * is populated it fails with ENOSPC. Pages that were fallocated but never written are
     * populated. A source that cannot be read fails with EFAULT, or gives a short write when only
     * its start is readable; a partly copied page has the rest of it zero-filled and counts as
     * populated. {@code source} must be native memory, and not a userfaultfd-registered mapping of
     * this same file (its faults could wait behind a hole punch that waits for this write).
     *
     * <p>Pages touched through a raw mapping while a write to them is in flight may be written
     * after the touch; population through gmem's own paths (write, COPY, ZEROPAGE) never overlaps.
     */
    long write(long offset, MemorySegment source) throws IOException;

    /** read() is refused by guest_memfd in every version: always EINVAL. */
    long read(long offset, MemorySegment destination) throws IOException;

    /**
     * fallocate with FALLOC_FL_* {@code mode}: KEEP_SIZE is required (else EOPNOTSUPP), and
     * PUNCH_HOLE is the only other bit allowed; offset and length page-aligned (else EINVAL);
     * allocation must lie inside the file (else EINVAL); punching past the end is a no-op. A
     * punched page reads as zeros, keeps its attributes, and may be written again.
     */
    void fallocate(int mode, long offset, long length) throws IOException;

    default void allocate(long offset, long length) throws IOException {
        fallocate(Linux.FALLOC_FL_KEEP_SIZE, offset, length);
    }

    default void punchHole(long offset, long length) throws IOException {
        fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_PUNCH_HOLE, offset, length);
    }

    /** Whether the page holding {@code offset} is populated (written, copied in, or touched). */
    boolean isPopulated(long offset) throws IOException;

    /**
     * Forgets the pages of a range that this library counted as populated but the file no longer
     * holds: pages removed behind its back (MADV_REMOVE through a mapping, a hole punched by
     * another process). Waits for writes in flight. They can be populated again afterwards.
     */
    void refreshPopulated(long offset, long length) throws IOException;

    /** Pages this library has populated (write, UFFDIO_COPY, ZEROPAGE) and not punched since. */
    long populatedPages();

    /**
     * A host mapping of {@code [offset, offset+length)}: shared, tracked, with every private page
     * inaccessible. Needs the MMAP flag (else ENODEV). The range must lie inside the file.
     */
    HostMapping map(long offset, long length) throws IOException;

    /**
     * The guest's view: one shared mapping of the whole file that reaches private and shared pages
     * alike, for KVM's memslot ({@code userspace_addr}). Owned by this object; never give it to
     * host code.
     */
    MemorySegment guestView() throws IOException;

    /** Whether the page holding {@code offset} is private. */
    boolean isPrivate(long offset);

    /** The offset of the first private page in a range, or -1 when every page of it is shared. */
    long firstPrivate(long offset, long length);

    /**
     * Sets {@code attributes} (0 for shared, {@link #PRIVATE}) on a page-aligned range, page-precise.
     * Returns at once when the range already has them. Converting to private fails with a
     * {@link ConversionBusyException} naming the first pinned page while any page is pinned, and
     * changes nothing. Every host mapping sees the new state at once; contents are kept.
     */
    void setAttributes(long offset, long length, long attributes) throws IOException;

    /**
     * Pins {@code [offset, offset+length)}, as a long-term reference would (the kernel's elevated
     * refcount): while pinned no page of it can become private. Private pages cannot be pinned.
     */
    Pin pin(long offset, long length) throws IOException;

    /**
     * Registers userfaultfd on a host mapping of this file with UffdAbi.REGISTER_MODE_MISSING
     * and/or _MINOR. Needs INIT_SHARED (else EINVAL). {@code features} are requested in the
     * handshake (for example EVENT_REMOVE); MISSING_SHMEM and MINOR_SHMEM are added as the modes need.
     */
    UffdRegistration registerUserfaultfd(HostMapping mapping, long modes, long features) throws IOException;

    /** The file itself, for binding to KVM or passing to another process. Owned by this object. */
    Fd fd();

    /** Releases the file, the guest view and every host mapping still open. */
    @Override
    void close() throws IOException;
}
