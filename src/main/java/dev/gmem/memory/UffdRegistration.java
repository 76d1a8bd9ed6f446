package dev.gmem.memory;

import dev.gmem.linux.SyscallException;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * A userfaultfd registered on a host mapping of a guest memory file, owning the userfaultfd. Its
 * resolving calls take file offsets and keep the file's populated state consistent with
 * {@link GuestMemory#write}: a page is populated once, by a write or by a COPY or ZEROPAGE, never
 * both. Results follow {@link Userfaultfd}: bytes resolved, {@link Userfaultfd#EXISTS},
 * {@link Userfaultfd#RETRY} or {@link Userfaultfd#NO_PAGE}.
 */
public final class UffdRegistration implements AutoCloseable {
    private final AbstractGuestMemory memory;
    private final HostMapping mapping;
    private final Userfaultfd uffd;
    private final long modes;

    UffdRegistration(AbstractGuestMemory memory, HostMapping mapping, Userfaultfd uffd, long modes) {
        this.memory = memory;
        this.mapping = mapping;
        this.uffd = uffd;
        this.modes = modes;
    }

    /** The userfaultfd, to poll and read events from. */
    public Userfaultfd userfaultfd() {
        return uffd;
    }

    public HostMapping mapping() {
        return mapping;
    }

    public long modes() {
        return modes;
    }

    /** The file offset of a faulting host address inside the registered mapping. */
    public long fileOffsetOf(long address) {
        long rel = address - mapping.address(0);
        if (rel < 0 || rel >= mapping.length()) {
            throw new IllegalArgumentException(
                    "address 0x" + Long.toHexString(address) + " is outside the registered mapping");
        }
        return mapping.fileOffset() + rel;
    }

    /** UFFDIO_COPY of {@code length} bytes of {@code source} to file offset {@code offset}. */
    public long copy(long offset, MemorySegment source, long length) throws IOException {
        return memory.resolveMissing(this, offset, length, source);
    }

    /** UFFDIO_ZEROPAGE: populates the range with zeroed pages. */
    public long zero(long offset, long length) throws IOException {
        return memory.resolveMissing(this, offset, length, null);
    }

    /** UFFDIO_CONTINUE: maps pages the file already holds; {@link Userfaultfd#NO_PAGE} where it holds none. */
    public long continueAt(long offset, long length) throws IOException {
        return uffd.continueRange(address(offset), length, 0);
    }

    /** UFFDIO_WAKE over a range, for faults on pages that another path populated. */
    public void wake(long offset, long length) throws SyscallException {
        uffd.wake(address(offset), length);
    }

    long address(long fileOffset) {
        long rel = fileOffset - mapping.fileOffset();
        if (rel < 0 || rel >= mapping.length()) {
            throw new IllegalArgumentException("file offset " + fileOffset + " is outside the registered mapping");
        }
        return mapping.address(rel);
    }

    /**
     * Unregisters the range, keeping the userfaultfd open. Threads waiting on faults are woken and
     * retry without it: a missing page is then filled by the kernel (with zeros, for a hole).
     */
    public void unregister() throws SyscallException {
        if (mapping.mapping().isOpen()) uffd.unregister(mapping.address(0), mapping.length());
    }

    /** Unregisters the range and closes the userfaultfd; threads still waiting on faults get SIGBUS-free retries. */
    @Override
    public void close() throws SyscallException {
        try {
            if (mapping.mapping().isOpen()) uffd.unregister(mapping.address(0), mapping.length());
        } finally {
            uffd.close();
        }
    }
}
