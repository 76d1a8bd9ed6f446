package dev.gmem.fault;

import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.PageBitmap;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * Memory in another process, as a fault target: a userfaultfd received from it (already
 * handshaken and registered by its owner) and the regions it covers. Resolves with UFFDIO_COPY and
 * UFFDIO_ZEROPAGE only (on 2 MiB hugetlbfs pages, where ZEROPAGE does not exist, with a COPY of
 * zeros), always whole pages of the region's size. It never maps, unmaps or writes that memory by
 * any other path, never unregisters it, and {@link #close} closes only its own descriptor.
 *
 * <p>Its populate-once claims live in its own bitmap (one bit per 4 KiB): a page is claimed before
 * its COPY and released if the COPY fails; the kernel's EEXIST arbitrates against anything else.
 */
public final class ForeignTarget implements FaultTarget {
    /** 2 MiB: the huge page size hugetlbfs regions may have. */
    public static final long HUGE_PAGE = 2L << 20;

    private final Userfaultfd uffd;
    private final ForeignRegion[] byHost;
    private final ForeignRegion[] bySource;
    private final long size;
    private final long unit = Posix.pageSize();
    private final PageBitmap populated;
    private final Arena arena = Arena.ofShared();
    private volatile MemorySegment hugeZeros;

    private ForeignTarget(Userfaultfd uffd, List<ForeignRegion> regions) {
        this.uffd = uffd;
        this.byHost = regions.stream()
                .sorted(Comparator.comparingLong(ForeignRegion::hostAddress))
                .toArray(ForeignRegion[]::new);
        this.bySource = regions.stream()
                .sorted(Comparator.comparingLong(ForeignRegion::sourceOffset))
                .toArray(ForeignRegion[]::new);
        this.size = bySource[bySource.length - 1].sourceEnd();
        this.populated = new PageBitmap(size / unit);
    }

    /**
     * A target over {@code regions} of the process that sent {@code uffd}; takes ownership of
     * {@code uffd} only if this succeeds.
     *
     * @throws IllegalArgumentException if the regions are empty, overlap, leave gaps in the source (they must lie end to end from
     *     offset 0), are not aligned to their page size (4 KiB or 2 MiB), or the sender asked for FORK, REMAP or UNMAP events
     */
    private volatile boolean graduated;

    public static ForeignTarget of(Userfaultfd uffd, List<ForeignRegion> regions) {
        if (regions.isEmpty()) throw new IllegalArgumentException("a foreign target needs at least one region");
        long unit = Posix.pageSize();
        for (ForeignRegion r : regions) {
            if (r.pageSize() != unit && r.pageSize() != HUGE_PAGE) {
                throw new IllegalArgumentException(
                        "region " + r + ": page size must be " + unit + " or " + HUGE_PAGE + " bytes");
            }
            if (r.length() <= 0
                    || r.hostAddress() % r.pageSize() != 0
                    || r.length() % r.pageSize() != 0
                    || r.sourceOffset() % r.pageSize() != 0
                    || r.sourceOffset() < 0) {
                throw new IllegalArgumentException(
                        "region " + r + ": address, length and source offset must be multiples of its page size");
            }
        }
        List<ForeignRegion> sorted = new ArrayList<>(regions);
        sorted.sort(Comparator.comparingLong(ForeignRegion::hostAddress));
        for (int i = 1; i < sorted.size(); i++) {
            if (sorted.get(i - 1).hostEnd() > sorted.get(i).hostAddress()) {
                throw new IllegalArgumentException("regions " + sorted.get(i - 1) + " and " + sorted.get(i)
                        + " overlap in the host's address space");
            }
        }
        sorted.sort(Comparator.comparingLong(ForeignRegion::sourceOffset));
        long expected = 0;
        for (ForeignRegion r : sorted) {
            if (r.sourceOffset() != expected) {
                throw new IllegalArgumentException("region " + r
                        + ": the regions must lie end to end in the source from offset 0 (as a VMM's memory file"
                        + " lays them), and this one "
                        + (r.sourceOffset() < expected ? "overlaps the one before" : "leaves a gap before it"));
            }
            expected = r.sourceEnd();
        }
        long unwanted = UffdFeature.mask(UffdFeature.EVENT_FORK, UffdFeature.EVENT_REMAP, UffdFeature.EVENT_UNMAP);
        if (uffd.via() == Userfaultfd.Source.RECEIVED && (uffd.api().features() & unwanted) != 0) {
            throw new IllegalArgumentException(
                    "the sender's userfaultfd asked for "
                            + UffdFeature.names(uffd.api().features() & unwanted)
                            + ": gmem serves faults and removals only (a FORK event would install a descriptor of the sender's child here)");
        }
        return new ForeignTarget(uffd, regions);
    }

    public List<ForeignRegion> regions() {
        return List.of(bySource);
    }

    @Override
    public Userfaultfd userfaultfd() {
        return uffd;
    }

    @Override
    public UffdMode mode() {
        return UffdMode.MISSING;
    }

    @Override
    public long size() {
        return size;
    }

    @Override
    public long pageSize(long offset) {
        return regionAt(offset).pageSize();
    }

    @Override
    public long regionEnd(long offset) {
        return regionAt(offset).sourceEnd();
    }

    @Override
    public long offsetOf(long address) {
        ForeignRegion r = find(byHost, address, true);
        return r == null ? -1 : r.sourceOffset() + (address - r.hostAddress());
    }

    /** The region holding source offset {@code offset}. */
    private ForeignRegion regionAt(long offset) {
        ForeignRegion r = find(bySource, offset, false);
        if (r == null)
            throw new IllegalArgumentException("source offset " + offset + " is in no region of this target");
        return r;
    }

    /** Binary search of regions sorted by host address ({@code host}) or by source offset for the one holding {@code at}; null if none. */
    private static ForeignRegion find(ForeignRegion[] sorted, long at, boolean host) {
        int lo = 0, hi = sorted.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            ForeignRegion r = sorted[mid];
            long start = host ? r.hostAddress() : r.sourceOffset();
            if (at < start) hi = mid - 1;
            else if (at >= start + r.length()) lo = mid + 1;
            else return r;
        }
        return null;
    }

    /** The host address of {@code [offset, offset+length)}, which must lie in one region, in whole pages. */
    private long hostAddress(ForeignRegion r, long offset, long length) {
        if (offset % r.pageSize() != 0
                || length <= 0
                || length % r.pageSize() != 0
                || offset + length > r.sourceEnd()) {
            throw new IllegalArgumentException(
                    "range [" + offset + ", +" + length + ") is not whole pages of region " + r);
        }
        return r.hostAddress() + (offset - r.sourceOffset());
    }

    @Override
    public long copy(long offset, MemorySegment bytes) throws IOException {
        return install(offset, bytes.byteSize(), bytes);
    }

    @Override
    public long zero(long offset, long length) throws IOException {
        ForeignRegion r = regionAt(offset);
        if (r.pageSize() == unit) return install(offset, length, null);
        // hugetlbfs has no ZEROPAGE: copy zeros, one huge page at a time
        return install(offset, r.pageSize(), hugeZeros());
    }

    /** COPY ({@code source} non-null) or ZEROPAGE over the pages of the range that this call claims first. */
    private long install(long offset, long length, MemorySegment source) throws SyscallException {
        ForeignRegion r = regionAt(offset);
        long address = hostAddress(r, offset, length);
        long first = offset / unit;
        long end = first + length / unit;
        long claimed = populated.claim(first, end);
        long perPage = r.pageSize() / unit;
        long whole = first + (claimed - first) / perPage * perPage;
        if (whole < claimed) populated.clearRange(whole, claimed); // never claim part of a huge page
        if (whole == first) return Userfaultfd.EXISTS;
        long want = (whole - first) * unit;
        long result;
        try {
            result = source == null ? uffd.zeropage(address, want, 0) : uffd.copy(address, source, want, 0);
        } catch (Throwable e) {
            populated.clearRange(first, whole);
            throw e;
        }
        if (result == Userfaultfd.EXISTS) {
            // present already (the process's own page, or one put there before a removal we have not read yet)
            populated.clearRange(first + perPage, whole);
            return result;
        }
        if (result < 0) {
            populated.clearRange(first, whole);
            return result;
        }
        long done = first + result / unit;
        if (done < whole) populated.clearRange(done, whole);
        return result;
    }

    private MemorySegment hugeZeros() {
        MemorySegment z = hugeZeros;
        if (z == null) {
            synchronized (this) {
                if (hugeZeros == null) hugeZeros = arena.allocate(HUGE_PAGE, unit); // zero-filled by allocate
                z = hugeZeros;
            }
        }
        return z;
    }

    @Override
    public boolean writable() {
        return false;
    }

    @Override
    public long write(long offset, MemorySegment bytes) {
        throw new UnsupportedOperationException(
                "memory in another process cannot be written with write(): resolve with UFFDIO_COPY");
    }

    @Override
    public long continueAt(long offset, long length) {
        throw new UnsupportedOperationException(
                "memory in another process is registered MISSING only: UFFDIO_CONTINUE does not apply");
    }

    @Override
    public void wake(long offset, long length) throws SyscallException {
        ForeignRegion r = regionAt(offset);
        uffd.wake(r.hostAddress() + (offset - r.sourceOffset()), Math.min(length, r.sourceEnd() - offset));
    }

    @Override
    public void forget(long offset, long length) {
        populated.clearRange(offset / unit, Math.min(populated.pages(), (offset + length + unit - 1) / unit));
    }

    /** Pages this target has populated (by 4 KiB unit), for tests and statistics. */
    public long populatedUnits() {
        return populated.count(0, populated.pages());
    }

    @Override
    public boolean registered() {
        return !graduated;
    }

    /** Never for a failure or a close: the other process's memory stays registered (see {@link #graduate}). */
    @Override
    public void unregister() {
        throw new UnsupportedOperationException("gmem never unregisters memory it does not own, except to graduate it");
    }

    /**
     * Unregisters every region from the sender's userfaultfd, which the sender's protocol allows:
     * the one unregistration a foreign target makes, and only through
     * {@link FaultEngine#graduate}, once every data page is in place. Afterwards the sender's memory
     * no longer depends on this process; its untouched zero pages and holes come from its kernel as
     * zeros, which is what they are, and the kernel wakes any thread still waiting on a fault there.
     */
    void graduate() throws dev.gmem.linux.SyscallException {
        for (ForeignRegion r : regions()) uffd.unregister(r.hostAddress(), r.length());
        graduated = true;
    }

    /** Closes the received descriptor (the sender keeps its own) and frees the zero buffer. */
    @Override
    public void close() {
        uffd.closeQuietly();
        arena.close();
    }
}
