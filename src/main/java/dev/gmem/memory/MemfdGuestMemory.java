package dev.gmem.memory;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.SyscallException;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.probe.HostReport;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * The whole guest memory contract over a memfd. write() is pwrite into the memfd; the kernel's own
 * record of populated pages (shmem's up-to-date pages, which SEEK_DATA reports and fallocated but
 * untouched pages are not) joins gmem's claim bitmap, so pages touched through any mapping count
 * as populated. Attributes live in gmem's bitmaps and are enforced with mprotect on every host
 * mapping; userfaultfd is the kernel's, on the memfd mappings.
 */
public final class MemfdGuestMemory extends AbstractGuestMemory {
    private final Fd memfd;

    private MemfdGuestMemory(Fd memfd, long size, long flags) {
        super(size, flags);
        this.memfd = memfd;
    }

    /** A new memfd-backed guest memory file of {@code size} bytes with MMAP / INIT_SHARED {@code flags}. */
    public static MemfdGuestMemory create(long size, long flags) throws IOException {
        checkCreation("memfd", size, flags);
        Fd fd = Fd.memfd("gmem-guest", Linux.MFD_CLOEXEC | Linux.MFD_ALLOW_SEALING);
        try {
            fd.truncate(size);
            // The size is fixed, as guest_memfd's is: a shrink would turn mapped pages into SIGBUS.
            fd.fcntl(Linux.F_ADD_SEALS, Linux.F_SEAL_SHRINK | Linux.F_SEAL_GROW | Linux.F_SEAL_SEAL);
        } catch (SyscallException e) {
            fd.closeQuietly();
            throw e;
        }
        return new MemfdGuestMemory(fd, size, flags);
    }

    /**
     * Guest memory over a new file at {@code path} (on tmpfs, typically, for a VMM to map as
     * QEMU's memory-backend-file does) instead of an anonymous memfd: the same contract, with the
     * file created exclusively (it must not exist) and sized to {@code size}. The file cannot be
     * sealed, so its size is fixed only by convention: whoever shrinks it turns mapped pages into
     * SIGBUS. The file stays when this object is closed; the caller decides its fate.
     */
    public static MemfdGuestMemory createFile(java.nio.file.Path path, long size, long flags) throws IOException {
        checkCreation("file", size, flags);
        return overFile(
                Fd.open(path, Linux.O_RDWR | Linux.O_CREAT | Linux.O_EXCL | Linux.O_NOFOLLOW | Linux.O_CLOEXEC, 0600),
                size,
                flags);
    }

    /**
     * Guest memory in the new, empty regular file open at {@code fd} (on tmpfs or a disk file
     * system), which this takes over: sized to {@code size} and closed with the guest memory.
     */
    public static MemfdGuestMemory overFile(Fd fd, long size, long flags) throws IOException {
        try {
            checkCreation("file", size, flags);
            dev.gmem.util.HostLimitException.truncate(fd, size); // a file system's size limit is this host's
        } catch (IOException | RuntimeException e) {
            fd.closeQuietly();
            throw e;
        }
        return new MemfdGuestMemory(fd, size, flags);
    }

    @Override
    public Backend backend() {
        return Backend.MEMFD;
    }

    private static final String WRITE =
            "pwrite into the memfd, populate-once by gmem's page claims and the kernel's SEEK_DATA";

    @Override
    public MemoryCapabilities.WritePath writePath() {
        return MemoryCapabilities.WritePath.KERNEL; // shmem always has write(): nothing to probe
    }

    @Override
    public String writeDescription() {
        return WRITE;
    }

    @Override
    public MemoryCapabilities capabilities() {
        HostReport.Userfaultfd u = HostProbe.userfaultfdOfHost();
        Check uffd = u.missingMemfd().available()
                ? Check.yes("userfaultfd on the memfd mappings: MISSING "
                        + (u.minorMemfd().available()
                                ? "and MINOR"
                                : "only (" + u.minorMemfd().reason() + ")"))
                : Check.no(u.missingMemfd().reason());
        return new MemoryCapabilities(
                MemoryCapabilities.WritePath.KERNEL,
                WRITE,
                Check.yes("attributes tracked per page by gmem; private pages are PROT_NONE in every host mapping"),
                uffd);
    }

    @Override
    protected Fd file() {
        return memfd;
    }

    @Override
    protected long copyIn(long offset, MemorySegment source) throws IOException {
        long done = 0;
        long want = source.byteSize();
        while (done < want) {
            long n;
            try {
                n = memfd.pwrite(source.asSlice(done), offset + done);
            } catch (SyscallException e) {
                // After some progress a failure makes a short write, as write(2) reports it.
                if (done > 0) break;
                throw error(
                        "write",
                        "off=" + offset + ", len=" + want,
                        Errno.of(e.errnoNumber()).orElse(Errno.EIO));
            }
            if (n == 0) break;
            done += n;
            if (done % page != 0) break; // a partly copied page ends the write
        }
        return done;
    }

    @Override
    protected long firstPopulatedByKernel(long from, long to) throws IOException {
        if (from >= to) return to;
        long data = memfd.seekData(from * page);
        return data < 0 ? to : Math.min(to, data / page);
    }

    /**
     * shmem leaves the page where a failed copy stopped populated with zeros; the contract says a
     * failed copy populates nothing, so the page (claimed by the failed write) is punched again.
     */
    @Override
    protected void discardUnwritten(long pageIndex) throws IOException {
        if (pageIndex < pages && firstPopulatedByKernel(pageIndex, pageIndex + 1) == pageIndex) {
            memfd.fallocate(Linux.FALLOC_FL_KEEP_SIZE | Linux.FALLOC_FL_PUNCH_HOLE, pageIndex * page, page);
        }
    }

    @Override
    protected void fallocateFile(int mode, long offset, long length) throws SyscallException {
        checkFallocate(this, mode, offset, length);
        long end = Math.min(size, offset + length);
        if (offset >= end) return; // punching past the end is a no-op
        memfd.fallocate(mode, offset, end - offset);
    }

    @Override
    protected void convertFile(long offset, long length, long attributes) {
        // gmem's bitmaps and the protections of the host mappings are the whole conversion.
    }

    @Override
    protected void requireUserfaultfd() {
        HostReport.Userfaultfd u = HostProbe.userfaultfdOfHost();
        if (!u.available()) throw new UnsupportedFeatureException("memfd", "userfaultfd", u.reason());
    }

    @Override
    protected void closeFile() throws IOException {
        memfd.close();
    }
}
