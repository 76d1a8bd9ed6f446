package dev.gmem.restore;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.memory.GuestMemories;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.MemfdGuestMemory;
import dev.gmem.memory.UnsupportedFeatureException;
import dev.gmem.snapshot.PageSource;
import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where a restore puts guest memory: a new anonymous guest memory file of a backend, or an
 * exported file at a path a VMM maps (a tmpfs file, as QEMU's memory-backend-file uses). An export
 * is filled in an {@link OutputFile} beside PATH and appears as PATH by {@link #commit} only once
 * the restore has succeeded; closing without a commit removes it, so a failed restore never leaves
 * a file that looks complete, and never touches a file it did not create.
 */
public final class Destination implements AutoCloseable {
    /** Guest memory files are shared from the start and mappable, as a restore needs. */
    public static final long FLAGS = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);

    private final GuestMemory memory;
    private static final double GIB = 1L << 30;

    private final OutputFile export;

    private Destination(GuestMemory memory, OutputFile export) {
        this.memory = memory;
        this.export = export;
    }

    /**
     * New anonymous guest memory for restoring {@code source}, refused up front when the source's data
     * could never be resident on this host (more than the memory, plus swap for a memfd, that this
     * process's cgroup allows): every data page of an eager or lazy restore ends up in memory.
     * Holes and zero pages cost nothing.
     *
     * @throws UnsupportedFeatureException naming both sizes: this host cannot hold the guest (exit status 3, never "bad input")
     */
    public static Destination anonymous(GuestMemory.Backend backend, PageSource source) throws IOException {
        checkResident(source, backend, dev.gmem.util.HostMemory.capacity(backend == GuestMemory.Backend.MEMFD));
        return anonymous(backend, source.size());
    }

    /** Refuses {@code source} when its data is more than {@code capacity} bytes (0: unknown, nothing refused). */
    static void checkResident(PageSource source, GuestMemory.Backend backend, long capacity) {
        long data = source.counts().dataBytes();
        if (capacity > 0 && data > capacity) {
            throw new UnsupportedFeatureException(
                    backend.label(),
                    "holding the guest's data",
                    String.format(
                            java.util.Locale.ROOT,
                            "%s holds %.1f GiB of data, more than the %.1f GiB of memory%s this process may use",
                            source.name(),
                            data / GIB,
                            capacity / GIB,
                            backend == GuestMemory.Backend.MEMFD ? " and swap" : ""));
        }
    }

    public static Destination anonymous(GuestMemory.Backend backend, long size) throws IOException {
        checkState(size);
        return new Destination(GuestMemories.create(backend, size, FLAGS), null);
    }

    /**
     * A new file at {@code path}, which must not exist, in a directory on a file system that
     * supports write() (tmpfs, or a disk file system; not hugetlbfs).
     */
    public static Destination export(Path path, long size) throws IOException {
        checkState(size);
        Path dir = path.toAbsolutePath().getParent();
        if (dir != null
                && Files.isDirectory(dir)
                && Files.getFileStore(dir).type().equals("hugetlbfs")) {
            throw new IOException(
                    path
                            + ": is on hugetlbfs, whose files cannot be filled with write(); export to a tmpfs path such as /dev/shm");
        }
        OutputFile out = OutputFile.create(path, OutputFile.Mode.CREATE, 0600);
        try {
            return new Destination(MemfdGuestMemory.overFile(out.fd().dup(), size, FLAGS), out);
        } catch (IOException | RuntimeException e) {
            out.close();
            throw e;
        }
    }

    /**
     * gmem keeps two bits of state per 4 KiB page on the Java heap (populated, private): 1 TiB of
     * guest memory needs 64 MiB. A size whose state the heap cannot hold is refused up front,
     * rather than failing later with OutOfMemoryError. The snapshot format allows guests up to
     * 4 PiB, so a sound snapshot can ask for more than this process has: that is this host's limit,
     * not a fault of the input.
     *
     * @throws dev.gmem.util.HostLimitException naming both sizes (exit status 3, never "bad input")
     */
    static void checkState(long size) throws dev.gmem.util.HostLimitException {
        long state = size / 4096 / 8 * 2;
        long heap = Runtime.getRuntime().maxMemory();
        if (state > heap / 2) {
            throw new dev.gmem.util.HostLimitException("guest memory of " + size + " bytes needs " + (state >> 20)
                    + " MiB of page state, more than half the Java heap (" + (heap >> 20)
                    + " MiB); raise it with GMEM_JAVA_OPTS=-Xmx...");
        }
    }

    public GuestMemory memory() {
        return memory;
    }

    /** The export's final path, or null for an anonymous file. */
    public Path exportPath() {
        return export == null ? null : export.target();
    }

    /**
     * Makes an export visible under its name, atomically, unless another writer created that name
     * meanwhile (then this fails and theirs is left intact). Nothing to do for an anonymous file.
     */
    public void commit() throws IOException {
        if (export != null) export.commit();
    }

    @Override
    public void close() throws IOException {
        try {
            memory.close();
        } finally {
            if (export != null) export.close();
        }
    }
}
