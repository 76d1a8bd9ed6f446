package dev.gmem.snapshot;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * An output file that does not exist under its name until it is complete: it is written as
 * {@code NAME.partial} beside the target and renamed over it by {@link #commit}. Closing without
 * a commit removes the partial file, so a failure never leaves a file that looks complete.
 */
public final class PartialFile implements AutoCloseable {
    private final Path target;
    private final Path partial;
    private final Fd fd;
    private boolean committed;

    private PartialFile(Path target, Path partial, Fd fd) {
        this.target = target;
        this.partial = partial;
        this.fd = fd;
    }

    /** Creates {@code target}'s partial file (replacing a stale one), readable and writable, mode 0644. */
    public static PartialFile create(Path target) throws IOException {
        Path abs = target.toAbsolutePath();
        if (Files.isDirectory(abs)) throw new IOException(target + ": is a directory");
        Path partial = partialPath(abs);
        Fd fd = Fd.open(partial, Linux.O_RDWR | Linux.O_CREAT | Linux.O_TRUNC | Linux.O_CLOEXEC, 0644);
        return new PartialFile(target, partial, fd);
    }

    public Fd fd() {
        return fd;
    }

    public Path target() {
        return target;
    }

    public Path partialPath() {
        return partial;
    }

    /** Renames the partial file to the target, atomically, replacing what was there. */
    public void commit() throws IOException {
        rename(partial, target, true);
        committed = true;
    }

    /** Where the partial file of {@code target} lives: {@code NAME.partial} beside it. */
    public static Path partialPath(Path target) {
        Path abs = target.toAbsolutePath();
        return abs.resolveSibling(abs.getFileName() + ".partial");
    }

    /** Renames {@code partial} to {@code target} atomically, replacing an existing target only if {@code replace}. */
    public static void rename(Path partial, Path target, boolean replace) throws IOException {
        try {
            if (replace) Files.move(partial, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
            else Files.move(partial, target, StandardCopyOption.ATOMIC_MOVE);
        } catch (AtomicMoveNotSupportedException e) {
            throw new IOException(target + ": cannot rename " + partial + " to it atomically (" + e.getMessage() + ")", e);
        }
    }

    /** Closes the descriptor and, unless committed, deletes the partial file. */
    @Override
    public void close() throws IOException {
        try {
            fd.close();
        } finally {
            if (!committed) Files.deleteIfExists(partial);
        }
    }
}
