package dev.gmem.fault;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.HostMapping;
import dev.gmem.memory.UffdRegistration;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * A guest memory file gmem owns, as a fault target: source offset = file offset. {@link #register}
 * maps {@code [0, length)} of it and registers the mapping with a new userfaultfd (EVENT_REMOVE
 * requested); this target owns both, and {@link #close} unregisters, wakes, closes the descriptor
 * and unmaps. It does not own the guest memory file itself. COPY and ZEROPAGE go through the
 * guest memory's populate-once claims, shared with its write(), so the fault path and a writer
 * never both fill a page.
 */
public final class OwnedTarget implements FaultTarget {
    private final GuestMemory memory;
    private final HostMapping mapping;
    private final UffdRegistration registration;
    private final UffdMode mode;
    private final long page;
    private volatile boolean registered = true;

    private OwnedTarget(GuestMemory memory, HostMapping mapping, UffdRegistration registration, UffdMode mode) {
        this.memory = memory;
        this.mapping = mapping;
        this.registration = registration;
        this.mode = mode;
        this.page = memory.pageSize();
    }

    /**
     * Maps the first {@code length} bytes of {@code memory} (created with MMAP and INIT_SHARED) and
     * registers them in {@code mode} (MINOR includes MISSING, for pages the file does not hold).
     *
     * @throws dev.gmem.memory.UnsupportedFeatureException where the backend cannot register userfaultfd on this host, with the reason
     */
    public static OwnedTarget register(GuestMemory memory, long length, UffdMode mode) throws IOException {
        long modes = UffdAbi.REGISTER_MODE_MISSING | (mode == UffdMode.MINOR ? UffdAbi.REGISTER_MODE_MINOR : 0);
        HostMapping mapping = memory.map(0, length);
        try {
            return new OwnedTarget(
                    memory, mapping, memory.registerUserfaultfd(mapping, modes, UffdFeature.EVENT_REMOVE.bit()), mode);
        } catch (IOException | RuntimeException e) {
            mapping.close();
            throw e;
        }
    }

    /** The registered mapping: what the guest (or a VMM's memslot) uses. */
    public HostMapping mapping() {
        return mapping;
    }

    public GuestMemory memory() {
        return memory;
    }

    @Override
    public Userfaultfd userfaultfd() {
        return registration.userfaultfd();
    }

    @Override
    public UffdMode mode() {
        return mode;
    }

    @Override
    public long size() {
        return mapping.length();
    }

    @Override
    public long pageSize(long offset) {
        return page;
    }

    @Override
    public long regionEnd(long offset) {
        return mapping.fileOffset() + mapping.length();
    }

    @Override
    public long offsetOf(long address) {
        long rel = address - mapping.address(0);
        return rel < 0 || rel >= mapping.length() ? -1 : mapping.fileOffset() + rel;
    }

    @Override
    public long copy(long offset, MemorySegment bytes) throws IOException {
        return registration.copy(offset, bytes, bytes.byteSize());
    }

    @Override
    public long zero(long offset, long length) throws IOException {
        return registration.zero(offset, length);
    }

    @Override
    public boolean writable() {
        return true;
    }

    @Override
    public long write(long offset, MemorySegment bytes) throws IOException {
        try {
            return memory.write(offset, bytes);
        } catch (SyscallException e) {
            if (e.is(Errno.ENOSPC)) return 0; // the first page is populated already
            throw e;
        }
    }

    @Override
    public long continueAt(long offset, long length) throws IOException {
        return registration.continueAt(offset, length);
    }

    @Override
    public void wake(long offset, long length) throws SyscallException {
        registration.wake(offset, length);
    }

    @Override
    public void forget(long offset, long length) throws IOException {
        memory.refreshPopulated(offset, length);
    }

    @Override
    public boolean registered() {
        return registered;
    }

    @Override
    public void unregister() throws SyscallException {
        if (!registered) return;
        registered = false;
        registration.unregister();
        registration.wake(0, mapping.length());
    }

    /**
     * Unregisters (if still registered) and wakes every waiter, closes the userfaultfd, then unmaps,
     * waiting while threads released from their faults leave native calls on the mapping.
     */
    @Override
    public void close() {
        try {
            if (registered && mapping.isOpen()) unregister();
        } catch (SyscallException ignored) {
            // the descriptor is closed next, which unregisters the range anyway
        }
        registration.userfaultfd().closeQuietly();
        mapping.closeEventually(5_000);
    }
}
