package dev.gmem.memory;

import dev.gmem.kvm.GuestMemfd;
import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.kvm.Kvm;
import dev.gmem.kvm.KvmAbi;
import dev.gmem.kvm.Vm;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.probe.HostReport;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.util.OptionalLong;

/**
 * A real KVM guest_memfd. Creation, flags, mmap and fallocate are the kernel's. write() is the
 * kernel's pwrite where the probe found it; elsewhere, for files with MMAP and INIT_SHARED, gmem
 * populates through its own shared mapping of the file and tracks populated pages itself (pages
 * that the kernel holds but gmem neither fallocated nor populated, found with mincore, were touched
 * through a mapping or by the guest, and count as populated). In-place conversion and userfaultfd
 * are the kernel's where the probe found them, and raise {@link UnsupportedFeatureException} with
 * the probe's reason where not.
 */
public final class KernelGuestMemory extends AbstractGuestMemory {
    private final Kvm kvm;
    private final Vm vm;
    private final GuestMemfd gmem;
    private final HostReport.GuestMemfd probe;
    private final boolean nativeWrite;
    /** Pages gmem fallocated and has not punched since: resident without having been populated. */
    private final PageBitmap fallocatedPages;

    private Mapping populationMapping;

    private KernelGuestMemory(Kvm kvm, Vm vm, GuestMemfd gmem, HostReport.GuestMemfd probe) {
        super(gmem.size(), gmem.flags());
        this.kvm = kvm;
        this.vm = vm;
        this.gmem = gmem;
        this.probe = probe;
        this.nativeWrite = probe.write().available();
        this.fallocatedPages = new PageBitmap(pages);
    }

    /**
     * A new guest_memfd of {@code size} bytes with {@code flags}, in a default VM that this object
     * owns. The kernel checks size and flags (EINVAL). Raises {@link UnsupportedFeatureException}
     * where the host has no guest_memfd.
     */
    public static KernelGuestMemory create(long size, long flags) throws IOException {
        HostReport.GuestMemfd probe = HostProbe.host().guestMemfd();
        if (!probe.available()) throw new UnsupportedFeatureException("kernel", "guest_memfd", probe.reason());
        Kvm kvm = Kvm.open();
        Vm vm = null;
        try {
            vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT);
            GuestMemfd g = vm.createGuestMemfd(size, flags);
            return new KernelGuestMemory(kvm, vm, g, probe);
        } catch (IOException | RuntimeException e) {
            if (vm != null) vm.fd().closeQuietly();
            kvm.fd().closeQuietly();
            throw e;
        }
    }

    /** The VM the file belongs to, for memslots. */
    public Vm vm() {
        return vm;
    }

    public GuestMemfd guestMemfd() {
        return gmem;
    }

    @Override
    public Backend backend() {
        return Backend.KERNEL;
    }

    @Override
    public MemoryCapabilities capabilities() {
        String write = nativeWrite
                ? "the kernel's write() on guest_memfd"
                : canEmulateWrite()
                        ? "gmem's copy through a shared mapping, populate-once by gmem's page claims ("
                                + probe.write().reason() + ")"
                        : "none: " + probe.write().reason() + "; gmem's own population needs MMAP and INIT_SHARED";
        MemoryCapabilities.WritePath path = nativeWrite
                ? MemoryCapabilities.WritePath.KERNEL
                : canEmulateWrite() ? MemoryCapabilities.WritePath.LIBRARY : MemoryCapabilities.WritePath.NONE;
        return new MemoryCapabilities(path, write, probe.conversion(), probe.userfaultfd());
    }

    private boolean canEmulateWrite() {
        return has(GuestMemfdFlag.MMAP) && has(GuestMemfdFlag.INIT_SHARED);
    }

    @Override
    protected Fd file() {
        return gmem.fd();
    }

    private synchronized Mapping population() throws SyscallException {
        ensureOpen();
        if (populationMapping == null) populationMapping = Mapping.shared(gmem.fd(), size);
        return populationMapping;
    }

    @Override
    protected long copyIn(long offset, MemorySegment source) throws IOException {
        if (nativeWrite) {
            long done = 0;
            while (done < source.byteSize()) {
                long n;
                try {
                    n = gmem.fd().pwrite(source.asSlice(done), offset + done);
                } catch (SyscallException e) {
                    if (done > 0) break; // a short write, as write(2) reports it
                    throw e;
                }
                if (n == 0) break;
                done += n;
                if (done % page != 0) break; // a partly copied page ends the write
            }
            return done;
        }
        if (!canEmulateWrite())
            throw new UnsupportedFeatureException(
                    "kernel", "write() population", capabilities().write());
        return withStableAttributes(() -> copyThroughMapping(offset, source));
    }

    /** gmem's own population: a copy through a shared mapping, never onto a private page nor from an unreadable source. */
    private long copyThroughMapping(long offset, MemorySegment source) throws IOException {
        long first = offset / page;
        long end = first + source.byteSize() / page;
        long reachable = (firstPrivatePage(first, end) - first) * page;
        if (reachable == 0) {
            throw error(
                    "write",
                    "off=" + offset + ": the page is private and gmem's population reaches only shared pages",
                    Errno.EACCES);
        }
        long readable = Math.min(reachable, Posix.readablePrefix(source.asSlice(0, reachable)));
        if (readable == 0)
            throw error(
                    "write",
                    "off=" + offset + ", len=" + source.byteSize() + ": the source cannot be read",
                    Errno.EFAULT);
        MemorySegment.copy(source, 0, population().segment(), offset, readable);
        return readable;
    }

    @Override
    protected long firstPopulatedByKernel(long from, long to) throws IOException {
        if (from >= to || !has(GuestMemfdFlag.MMAP)) return to;
        byte[] resident = population().residency(from * page, (to - from) * page, page);
        for (int i = 0; i < resident.length; i++) {
            long p = from + i;
            if ((resident[i] & 1) != 0 && !fallocatedPages.get(p) && !populated.get(p)) return p;
        }
        return to;
    }

    @Override
    protected void fallocateFile(int mode, long offset, long length) throws SyscallException {
        gmem.fd().fallocate(mode, offset, length);
    }

    @Override
    protected void fallocated(boolean punched, long fromPage, long toPage) throws IOException {
        if (punched) {
            fallocatedPages.clearRange(fromPage, toPage);
            return;
        }
        // Pages already touched (through a mapping or by the guest) stay populated: record them
        // before they join the fallocated set, where residency no longer tells.
        if (fromPage < toPage && has(GuestMemfdFlag.MMAP)) {
            byte[] resident = population().residency(fromPage * page, (toPage - fromPage) * page, page);
            for (int i = 0; i < resident.length; i++) {
                if ((resident[i] & 1) != 0 && !fallocatedPages.get(fromPage + i)) populated.set(fromPage + i);
            }
        }
        fallocatedPages.setRange(fromPage, toPage);
    }

    @Override
    protected void convertFile(long offset, long length, long attributes) throws IOException {
        Check conversion = probe.conversion();
        if (!conversion.available())
            throw new UnsupportedFeatureException("kernel", "in-place conversion", conversion.reason());
        OptionalLong busy = gmem.setMemoryAttributes(offset, length, attributes);
        if (busy.isPresent()) {
            throw new ConversionBusyException(
                    "kernel guest memory, off=" + offset + ", len=" + length, busy.getAsLong());
        }
    }

    @Override
    protected void requireUserfaultfd() {
        Check uffd = probe.userfaultfd();
        if (!uffd.available()) throw new UnsupportedFeatureException("kernel", "userfaultfd", uffd.reason());
    }

    @Override
    protected void closeFile() throws IOException {
        synchronized (this) {
            if (populationMapping != null) populationMapping.close();
        }
        try {
            gmem.close();
        } finally {
            try {
                vm.close();
            } finally {
                kvm.close();
            }
        }
    }
}
