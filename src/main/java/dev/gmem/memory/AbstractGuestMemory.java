package dev.gmem.memory;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The contract logic both backends share: argument checks, populate-once claims, attributes,
 * pins, host-mapping protection and userfaultfd resolution. A backend supplies the file, how bytes
 * get into it, what the kernel itself knows about populated pages, and the native parts.
 *
 * <p>Two locks, never nested: {@code population} (write, COPY and ZEROPAGE share it; punching a
 * hole takes it alone, so a punch never interleaves with a claim) and {@code conversion} (checked
 * host accesses share it; conversions and new mappings take it alone, so a page never turns
 * PROT_NONE under a checked access). A host thread that blocks in a userfault while holding
 * {@code conversion} cannot stall the resolver, which only needs {@code population}.
 */
abstract class AbstractGuestMemory implements GuestMemory {
    private static final long KNOWN_FLAGS = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);

    protected final long size;
    protected final long page = Posix.pageSize();
    protected final long pages;
    protected final long flags;
    /** Pages populated through this library (write, COPY, ZEROPAGE), or seen populated by the kernel. */
    protected final PageBitmap populated;

    private final PageBitmap privatePages;
    private final ConcurrentSkipListMap<Long, Integer> pins = new ConcurrentSkipListMap<>();
    private final List<HostMapping> hostMappings = new CopyOnWriteArrayList<>();
    private final ReentrantReadWriteLock population = new ReentrantReadWriteLock();
    private final ReentrantReadWriteLock conversion = new ReentrantReadWriteLock();
    private final AtomicBoolean closed = new AtomicBoolean();
    private Mapping guestView;

    protected AbstractGuestMemory(long size, long flags) {
        this.size = size;
        this.flags = flags;
        this.pages = size / page;
        this.populated = new PageBitmap(pages);
        this.privatePages = new PageBitmap(pages);
        if ((flags & GuestMemfdFlag.INIT_SHARED.bit()) == 0) privatePages.setRange(0, pages);
    }

    /** The creation checks of rules 9 and 11, for backends that do not have the kernel make them. */
    static void checkCreation(String what, long size, long flags) throws SyscallException {
        long page = Posix.pageSize();
        if (size <= 0 || size % page != 0) {
            throw new SyscallException(
                    "create " + what + " guest memory",
                    "size=" + size + ": must be positive and a multiple of " + page,
                    Errno.EINVAL);
        }
        if ((flags & ~KNOWN_FLAGS) != 0) {
            throw new SyscallException(
                    "create " + what + " guest memory",
                    "flags=0x" + Long.toHexString(flags) + ": unknown flag bits 0x"
                            + Long.toHexString(flags & ~KNOWN_FLAGS),
                    Errno.EINVAL);
        }
    }

    // ---- what a backend provides ----

    /** The guest memory file. */
    protected abstract Fd file();

    /**
     * Copies {@code source} into the file at {@code offset}, over pages this call has claimed and
     * that nobody populated. Returns the bytes copied, fewer when only a prefix of the source could
     * be read; fails with EFAULT when none could.
     */
    protected abstract long copyIn(long offset, MemorySegment source) throws IOException;

    /** The first page of {@code [from, to)} that the kernel knows to be populated by any path, or {@code to}. */
    protected abstract long firstPopulatedByKernel(long from, long to) throws IOException;

    /** A write stopped before {@code page}, which it had claimed: undo anything the copy left there. */
    protected void discardUnwritten(long pageIndex) throws IOException {}

    /** fallocate on the file; checks the arguments as guest_memfd does. */
    protected abstract void fallocateFile(int mode, long offset, long length) throws SyscallException;

    /** Called after a successful fallocate, with the range clipped to the file. */
    protected void fallocated(boolean punched, long fromPage, long toPage) throws IOException {}

    /** The native part of a conversion, or an {@link UnsupportedFeatureException}. */
    protected abstract void convertFile(long offset, long length, long attributes) throws IOException;

    /** Raises {@link UnsupportedFeatureException} when userfaultfd cannot be registered on this file. */
    protected abstract void requireUserfaultfd();

    /** Releases the backend's own resources after the mappings are gone. */
    protected abstract void closeFile() throws IOException;

    // ---- the contract ----

    @Override
    public long size() {
        return size;
    }

    @Override
    public long pageSize() {
        return page;
    }

    @Override
    public long flags() {
        return flags;
    }

    @Override
    public Fd fd() {
        return file();
    }

    protected SyscallException error(String call, String arguments, Errno errno) {
        return new SyscallException(call, backend().label() + " guest memory, " + arguments, errno);
    }

    private boolean outside(long offset, long length) {
        return offset < 0 || length < 0 || offset > size || length > size - offset;
    }

    @Override
    public long write(long offset, MemorySegment source) throws IOException {
        long length = source.byteSize();
        String args = "off=" + offset + ", len=" + length;
        if (!source.isNative())
            throw new IllegalArgumentException("write needs a native source (off-heap memory or a mapping)");
        if (offset % page != 0 || length % page != 0)
            throw error("write", args + ": offset and length must be page-aligned", Errno.EINVAL);
        if (outside(offset, length))
            throw error("write", args + ": past the end of the file (" + size + " bytes)", Errno.EINVAL);
        if (length == 0) return 0;
        ensureOpen();
        population.readLock().lock();
        try {
            long first = offset / page;
            long end = first + length / page;
            long byKernel = firstPopulatedByKernel(first, end);
            if (byKernel < end) populated.set(byKernel);
            long claimed = populated.claim(first, byKernel);
            if (claimed == first) {
                throw error(
                        "write", args + ": the page at offset " + first * page + " is already populated", Errno.ENOSPC);
            }
            long copied;
            try {
                copied = copyIn(offset, source.asSlice(0, (claimed - first) * page));
            } catch (Throwable e) {
                try {
                    discardUnwritten(first);
                } finally {
                    populated.clearRange(first, claimed);
                }
                throw e;
            }
            long stop = first + copied / page;
            if (copied % page != 0) {
                stop++; // the partly copied page is zero-filled and populated
            } else if (stop < claimed) {
                discardUnwritten(stop);
            }
            if (stop < claimed) populated.clearRange(stop, claimed);
            return copied;
        } finally {
            population.readLock().unlock();
        }
    }

    @Override
    public long read(long offset, MemorySegment destination) throws IOException {
        throw error(
                "read",
                "off=" + offset + ", len=" + destination.byteSize() + ": guest memory cannot be read with read()",
                Errno.EINVAL);
    }

    @Override
    public void fallocate(int mode, long offset, long length) throws IOException {
        ensureOpen();
        boolean punch = (mode & Linux.FALLOC_FL_PUNCH_HOLE) != 0;
        ReentrantReadWriteLock.ReadLock shared = population.readLock();
        ReentrantReadWriteLock.WriteLock exclusive = population.writeLock();
        if (punch) exclusive.lock();
        else shared.lock();
        try {
            fallocateFile(mode, offset, length);
            long first = Math.min(pages, offset / page);
            long end = Math.min(pages, (offset + length) / page);
            if (punch) populated.clearRange(first, end);
            fallocated(punch, first, end);
        } finally {
            if (punch) exclusive.unlock();
            else shared.unlock();
        }
    }

    /** The guest_memfd fallocate checks (rules 24 to 29), in the kernel's order. */
    static void checkFallocate(AbstractGuestMemory m, int mode, long offset, long length) throws SyscallException {
        String args = "mode=0x" + Integer.toHexString(mode) + ", off=" + offset + ", len=" + length;
        if (offset < 0 || length <= 0) throw m.error("fallocate", args, Errno.EINVAL);
        if ((mode & Linux.FALLOC_FL_KEEP_SIZE) == 0)
            throw m.error("fallocate", args + ": FALLOC_FL_KEEP_SIZE is required", Errno.EOPNOTSUPP);
        if ((mode & ~(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_PUNCH_HOLE)) != 0) {
            throw m.error("fallocate", args + ": only KEEP_SIZE and PUNCH_HOLE are supported", Errno.EOPNOTSUPP);
        }
        if (length > Long.MAX_VALUE - offset) throw m.error("fallocate", args + ": the range overflows", Errno.EFBIG);
        if (offset % m.page != 0 || length % m.page != 0)
            throw m.error("fallocate", args + ": offset and length must be page-aligned", Errno.EINVAL);
        if ((mode & Linux.FALLOC_FL_PUNCH_HOLE) == 0 && m.outside(offset, length)) {
            throw m.error(
                    "fallocate", args + ": allocation past the end of the file (" + m.size + " bytes)", Errno.EINVAL);
        }
    }

    @Override
    public boolean isPopulated(long offset) throws IOException {
        long p = pageOf(offset);
        return populated.get(p) || firstPopulatedByKernel(p, p + 1) == p;
    }

    @Override
    public void refreshPopulated(long offset, long length) throws IOException {
        if (outside(offset, length))
            throw error("refresh", "off=" + offset + ", len=" + length + ": past the end of the file", Errno.EINVAL);
        ensureOpen();
        population.writeLock().lock();
        try {
            long end = (offset + length + page - 1) / page;
            for (long p = populated.nextSet(offset / page, end); p < end; p = populated.nextSet(p + 1, end)) {
                if (firstPopulatedByKernel(p, p + 1) != p) populated.clear(p);
            }
        } finally {
            population.writeLock().unlock();
        }
    }

    @Override
    public long populatedPages() {
        return populated.count(0, pages);
    }

    private long pageOf(long offset) {
        if (offset < 0 || offset >= size)
            throw new IndexOutOfBoundsException("offset " + offset + " outside guest memory of " + size + " bytes");
        return offset / page;
    }

    @Override
    public HostMapping map(long offset, long length) throws IOException {
        String args = "off=" + offset + ", len=" + length;
        if (!has(GuestMemfdFlag.MMAP)) throw error("mmap", args + ": created without the MMAP flag", Errno.ENODEV);
        if (offset % page != 0 || length <= 0 || length % page != 0)
            throw error("mmap", args + ": offset and length must be page-aligned and length positive", Errno.EINVAL);
        if (outside(offset, length))
            throw error(
                    "mmap",
                    args + ": past the end of the file (" + size + " bytes), where access raises SIGBUS",
                    Errno.EINVAL);
        ensureOpen();
        Mapping m = Mapping.map(file(), offset, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED);
        HostMapping hm = new HostMapping(this, m, offset);
        conversion.writeLock().lock();
        try {
            ensureOpen(); // close() may have run since the check above
            long first = offset / page;
            long end = first + length / page;
            for (long p = privatePages.nextSet(first, end); p < end; ) {
                long runEnd = privatePages.nextClear(p, end);
                m.protect((p - first) * page, (runEnd - p) * page, Linux.PROT_NONE);
                p = privatePages.nextSet(runEnd, end);
            }
            hostMappings.add(hm);
        } catch (Throwable e) {
            m.close();
            throw e;
        } finally {
            conversion.writeLock().unlock();
        }
        return hm;
    }

    /** The first private page of {@code [from, to)}, or {@code to}. */
    protected long firstPrivatePage(long from, long to) {
        return privatePages.nextSet(from, to);
    }

    /**
     * Stops tracking {@code hm}, then unmaps it outside the lock: its unmapping may wait for native
     * calls to return (threads just released from userfaults). In between, a conversion no longer
     * protects it; it is on its way out, and gmem's own paths no longer use it.
     */
    boolean closeMappingEventually(HostMapping hm, long waitMillis) {
        conversion.writeLock().lock();
        try {
            hostMappings.remove(hm);
        } finally {
            conversion.writeLock().unlock();
        }
        return hm.mapping().closeEventually(waitMillis);
    }

    /** Unmaps a host mapping; never while a conversion is changing protections. */
    void closeMapping(HostMapping hm) {
        conversion.writeLock().lock();
        try {
            hostMappings.remove(hm);
            hm.mapping().close();
        } finally {
            conversion.writeLock().unlock();
        }
    }

    /**
     * Runs {@code action} while no conversion can change an attribute, for backends that copy
     * through their own mapping and must not meet a page turning private mid-copy.
     */
    protected <T> T withStableAttributes(IoSupplier<T> action) throws IOException {
        conversion.readLock().lock();
        try {
            return action.get();
        } finally {
            conversion.readLock().unlock();
        }
    }

    /** A computation that may fail with an I/O error. */
    @FunctionalInterface
    protected interface IoSupplier<T> {
        T get() throws IOException;
    }

    /** Runs {@code access} on a host mapping, unless a page it touches is private. */
    void checkedAccess(HostMapping hm, long offset, long length, Runnable access) throws PrivateMemoryException {
        if (offset < 0 || length < 0 || offset > hm.length() - length) {
            throw new IndexOutOfBoundsException(
                    "access [" + offset + ", +" + length + ") outside a mapping of " + hm.length() + " bytes");
        }
        if (length == 0) return;
        long start = hm.fileOffset() + offset;
        long first = start / page;
        long end = (start + length + page - 1) / page;
        conversion.readLock().lock();
        try {
            long p = privatePages.nextSet(first, end);
            if (p < end) throw new PrivateMemoryException(Math.max(p * page, start));
            access.run();
        } finally {
            conversion.readLock().unlock();
        }
    }

    @Override
    public synchronized MemorySegment guestView() throws IOException {
        ensureOpen();
        if (guestView == null) guestView = Mapping.shared(file(), size);
        return guestView.segment();
    }

    @Override
    public boolean isPrivate(long offset) {
        return privatePages.get(pageOf(offset));
    }

    @Override
    public long firstPrivate(long offset, long length) {
        if (outside(offset, length))
            throw new IndexOutOfBoundsException(
                    "range [" + offset + ", +" + length + ") outside guest memory of " + size + " bytes");
        long first = offset / page;
        long end = (offset + length + page - 1) / page;
        long p = privatePages.nextSet(first, end);
        return p < end ? Math.max(offset, p * page) : -1;
    }

    @Override
    public void setAttributes(long offset, long length, long attributes) throws IOException {
        String args = "off=" + offset + ", len=" + length + ", attributes=0x" + Long.toHexString(attributes);
        if ((attributes & ~PRIVATE) != 0)
            throw error("set attributes", args + ": only PRIVATE (0x8) is known", Errno.EINVAL);
        if (length <= 0 || offset < 0 || length > Long.MAX_VALUE - offset)
            throw error("set attributes", args + ": empty or wrapping range", Errno.EINVAL);
        if (offset % page != 0 || length % page != 0)
            throw error("set attributes", args + ": offset and length must be page-aligned", Errno.EINVAL);
        if (offset >= size || length > size - offset)
            throw error("set attributes", args + ": past the end of the file (" + size + " bytes)", Errno.EINVAL);
        ensureOpen();
        boolean toPrivate = attributes == PRIVATE;
        long first = offset / page;
        long end = first + length / page;
        conversion.writeLock().lock();
        try {
            boolean already =
                    toPrivate ? privatePages.nextClear(first, end) == end : privatePages.nextSet(first, end) == end;
            if (already) return;
            if (toPrivate) {
                Long pinned = pins.ceilingKey(first);
                if (pinned != null && pinned < end)
                    throw new ConversionBusyException(backend().label() + " guest memory, " + args, pinned * page);
            }
            convertFile(offset, length, attributes);
            // Order matters: a page must never be marked shared while a mapping still has it
            // PROT_NONE, or a checked access would pass its check and kill the process. So a page
            // turns private in the bitmap before the mappings, and shared in the mappings before
            // the bitmap. A failure part-way leaves the range private, the safe side.
            if (toPrivate) {
                privatePages.setRange(first, end);
                protectMappings(offset, length, Linux.PROT_NONE);
            } else {
                protectMappings(offset, length, Linux.PROT_READ | Linux.PROT_WRITE);
                privatePages.clearRange(first, end);
            }
        } finally {
            conversion.writeLock().unlock();
        }
    }

    private void protectMappings(long offset, long length, int prot) throws SyscallException {
        for (HostMapping hm : hostMappings) {
            long from = Math.max(offset, hm.fileOffset());
            long to = Math.min(offset + length, hm.fileOffset() + hm.length());
            if (from < to) hm.mapping().protect(from - hm.fileOffset(), to - from, prot);
        }
    }

    @Override
    public Pin pin(long offset, long length) throws IOException {
        String args = "off=" + offset + ", len=" + length;
        if (offset % page != 0 || length <= 0 || length % page != 0)
            throw error("pin", args + ": offset and length must be page-aligned and length positive", Errno.EINVAL);
        if (outside(offset, length)) throw error("pin", args + ": past the end of the file", Errno.EINVAL);
        long first = offset / page;
        long end = first + length / page;
        conversion.readLock().lock();
        try {
            long p = privatePages.nextSet(first, end);
            if (p < end) throw new PrivateMemoryException(p * page);
            for (long q = first; q < end; q++) pins.merge(q, 1, Integer::sum);
        } finally {
            conversion.readLock().unlock();
        }
        return new Pin() {
            private final AtomicBoolean released = new AtomicBoolean();

            @Override
            public long offset() {
                return offset;
            }

            @Override
            public long length() {
                return length;
            }

            @Override
            public void close() {
                if (!released.compareAndSet(false, true)) return;
                for (long q = first; q < end; q++) pins.computeIfPresent(q, (k, n) -> n == 1 ? null : n - 1);
            }
        };
    }

    @Override
    public UffdRegistration registerUserfaultfd(HostMapping mapping, long modes, long features) throws IOException {
        if (mapping.memory() != this)
            throw new IllegalArgumentException("the mapping belongs to another guest memory file");
        requireUserfaultfd();
        String args = "modes=" + modes;
        if (!has(GuestMemfdFlag.INIT_SHARED))
            throw error("UFFDIO_REGISTER", args + ": userfaultfd needs a file created with INIT_SHARED", Errno.EINVAL);
        long known = UffdAbi.REGISTER_MODE_MISSING | UffdAbi.REGISTER_MODE_MINOR;
        if (modes == 0 || (modes & ~known) != 0)
            throw error("UFFDIO_REGISTER", args + ": modes must be MISSING and/or MINOR", Errno.EINVAL);
        long wanted = features
                | ((modes & UffdAbi.REGISTER_MODE_MISSING) != 0 ? UffdFeature.MISSING_SHMEM.bit() : 0)
                | ((modes & UffdAbi.REGISTER_MODE_MINOR) != 0 ? UffdFeature.MINOR_SHMEM.bit() : 0);
        Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK);
        try {
            uffd.handshake(wanted);
            uffd.register(mapping.mapping(), 0, mapping.length(), modes);
        } catch (IOException | RuntimeException e) {
            uffd.closeQuietly();
            throw e;
        }
        return new UffdRegistration(this, mapping, uffd, modes);
    }

    /** COPY ({@code source} non-null) or ZEROPAGE of a range, claiming its pages first. */
    long resolveMissing(UffdRegistration reg, long offset, long length, MemorySegment source) throws IOException {
        if (offset % page != 0 || length <= 0 || length % page != 0) {
            throw error(
                    source == null ? "UFFDIO_ZEROPAGE" : "UFFDIO_COPY",
                    "off=" + offset + ", len=" + length + ": must be page-aligned",
                    Errno.EINVAL);
        }
        long address = reg.address(offset);
        reg.address(offset + length - 1); // the whole range must lie in the registered mapping (throws otherwise)
        population.readLock().lock();
        try {
            long first = offset / page;
            long end = first + length / page;
            long claimed = populated.claim(first, end);
            if (claimed == first) return Userfaultfd.EXISTS;
            long want = (claimed - first) * page;
            long r;
            try {
                r = source == null
                        ? reg.userfaultfd().zeropage(address, want, 0)
                        : reg.userfaultfd().copy(address, source, want, 0);
            } catch (Throwable e) {
                populated.clearRange(first, claimed);
                throw e;
            }
            if (r == Userfaultfd.EXISTS) {
                // The file already has a page there: populated, or only fallocated (not yet
                // written). Ask the kernel, without our own claim in the way.
                populated.clearRange(first, claimed);
                if (firstPopulatedByKernel(first, first + 1) == first) populated.set(first);
                return r;
            }
            if (r < 0) {
                populated.clearRange(first, claimed);
                return r;
            }
            long done = first + r / page;
            if (done < claimed) populated.clearRange(done, claimed);
            return r;
        } finally {
            population.readLock().unlock();
        }
    }

    protected void ensureOpen() {
        if (closed.get()) throw new IllegalStateException(backend().label() + " guest memory is closed");
    }

    /**
     * Closes once no write, fallocate, conversion or checked access is in flight (close every
     * {@link UffdRegistration} first: a thread blocked in a fault would hold this up).
     */
    @Override
    public void close() throws IOException {
        population.writeLock().lock();
        conversion.writeLock().lock();
        try {
            if (!closed.compareAndSet(false, true)) return;
            for (HostMapping hm : List.copyOf(hostMappings)) {
                hostMappings.remove(hm);
                hm.mapping().close();
            }
            synchronized (this) {
                if (guestView != null) guestView.close();
            }
            closeFile();
        } finally {
            conversion.writeLock().unlock();
            population.writeLock().unlock();
        }
    }

    @Override
    public String toString() {
        return backend().label() + " guest memory of " + size + " bytes, flags "
                + GuestMemfdFlag.decode(flags).names();
    }
}
