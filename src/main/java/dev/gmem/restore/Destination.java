package dev.gmem.restore;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.memory.GuestMemories;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.MemfdGuestMemory;
import java.io.IOException;
import java.nio.file.FileStore;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Where a restore puts guest memory: a new anonymous guest memory file of a backend, or an
 * exported file at a path a VMM maps (a tmpfs file, as QEMU's memory-backend-file uses). An export
 * is filled under {@code PATH.partial} and renamed to PATH by {@link #commit} only once the restore
 * has succeeded; closing without a commit removes it, so a failed restore never leaves a file that
 * looks complete.
 */
public final class Destination implements AutoCloseable {
    /** Guest memory files are shared from the start and mappable, as a restore needs. */
    public static final long FLAGS = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);

    private final GuestMemory memory;
    private final Path export;
    private final Path partial;
    private boolean committed;

    private Destination(GuestMemory memory, Path export, Path partial) {
        this.memory = memory;
        this.export = export;
        this.partial = partial;
    }

    public static Destination anonymous(GuestMemory.Backend backend, long size) throws IOException {
        checkState(size);
        return new Destination(GuestMemories.create(backend, size, FLAGS), null, null);
    }

    /**
     * A new file at {@code path}, which must not exist, in a directory on a file system that
     * supports write() (tmpfs, or a disk file system; not hugetlbfs).
     */
    public static Destination export(Path path, long size) throws IOException {
        Path abs = path.toAbsolutePath();
        Path dir = abs.getParent();
        if (dir == null || !Files.isDirectory(dir)) throw new IOException(path + ": the directory " + dir + " does not exist");
        if (Files.exists(abs)) throw new IOException(path + ": already exists; gmem does not overwrite an export (remove it first)");
        FileStore store = Files.getFileStore(dir);
        if (store.type().equals("hugetlbfs")) {
            throw new IOException(path + ": is on hugetlbfs, whose files cannot be filled with write(); export to a tmpfs path such as /dev/shm");
        }
        checkState(size);
        Path partial = dev.gmem.snapshot.PartialFile.partialPath(abs);
        Files.deleteIfExists(partial);
        return new Destination(MemfdGuestMemory.createFile(partial, size, FLAGS), abs, partial);
    }

    /**
     * gmem keeps two bits of state per 4 KiB page on the Java heap (populated, private): 1 TiB of
     * guest memory needs 64 MiB. A size whose state the heap cannot hold is refused up front,
     * rather than failing later with OutOfMemoryError (a damaged manifest can claim any size).
     */
    private static void checkState(long size) throws IOException {
        long state = size / 4096 / 8 * 2;
        long heap = Runtime.getRuntime().maxMemory();
        if (state > heap / 2) {
            throw new IOException("guest memory of " + size + " bytes needs " + (state >> 20) + " MiB of page state, more than half the Java heap ("
                    + (heap >> 20) + " MiB); raise it with GMEM_JAVA_OPTS=-Xmx...");
        }
    }

    public GuestMemory memory() {
        return memory;
    }

    /** The export's final path, or null for an anonymous file. */
    public Path exportPath() {
        return export;
    }

    /** Makes an export visible under its name (atomically). Nothing to do for an anonymous file. */
    public void commit() throws IOException {
        if (export == null) return;
        dev.gmem.snapshot.PartialFile.rename(partial, export, false);
        committed = true;
    }

    @Override
    public void close() throws IOException {
        try {
            memory.close();
        } finally {
            if (export != null && !committed) Files.deleteIfExists(partial);
        }
    }
}
