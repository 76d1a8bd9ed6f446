package dev.gmem.util;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.SyscallException;
import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.BasicFileAttributes;
import java.util.HashSet;
import java.util.Set;
import java.util.concurrent.ThreadLocalRandom;

/**
 * The one way gmem writes a file (snapshots, raw images, exports): it appears under its name only
 * when complete, and never through or over something gmem was not asked to write.
 *
 * <ul>
 *   <li>The data goes to a partial file beside the target, {@code NAME.partial.PID.RANDOM}, unique
 *       to this writer and created exclusively ({@code O_CREAT|O_EXCL|O_NOFOLLOW}): a file or a
 *       symbolic link already there (planted by anyone) makes the creation fail; it is never
 *       followed, truncated or deleted.
 *   <li>The target must be absent ({@link Mode#CREATE}) or a regular file ({@link Mode#REPLACE}): a
 *       symbolic link, a device, a directory or any other special file there is refused. A target
 *       that is the same file as an input is refused.
 *   <li>{@link #commit} makes the file appear atomically: by a hard link when the target was absent
 *       at the start (so a target another writer created meanwhile makes this one fail, and theirs
 *       stays intact), by a rename over it when it was a regular file (refused if it was replaced
 *       meanwhile).
 *   <li>Closing without a commit deletes the partial file; so does an interruption
 *       ({@link #abandonAll}, called by the signal handler), after which no commit succeeds.
 * </ul>
 * A reader of the final path therefore sees either what was there before or a complete file,
 * never a partial one, and never a mixture of two writers.
 */
public final class OutputFile implements AutoCloseable {
    /** What may be at the target's path already. */
    public enum Mode {
        /** Nothing: an existing target is refused. */
        CREATE,
        /** Nothing, or a regular file, which the commit replaces. */
        REPLACE
    }

    private static final Set<OutputFile> LIVE = new HashSet<>();
    private static final Set<Path> SCRATCH = new HashSet<>();
    private static boolean abandoned;

    private final Path target;
    private final Path partial;
    private final Fd fd;
    /** The target's identity at the start (see {@link #identity}), or null when it was absent. */
    private final Object replaced;

    private boolean committed;

    private OutputFile(Path target, Path partial, Fd fd, Object replaced) {
        this.target = target;
        this.partial = partial;
        this.fd = fd;
        this.replaced = replaced;
    }

    /**
     * Creates the partial file of {@code target}, with {@code permissions} (e.g. 0644), after
     * checking the target and that it is none of {@code inputs}.
     *
     * @throws OutputRefusedException when the target cannot or must not be written, with the reason
     */
    public static OutputFile create(Path target, Mode mode, int permissions, Path... inputs) throws IOException {
        if (target.toString().isEmpty()) throw new OutputRefusedException(target, "the output path is empty");
        Path abs = target.toAbsolutePath().normalize();
        Path dir = abs.getParent();
        if (dir == null || abs.getFileName() == null) throw new OutputRefusedException(target, "is not a file name");
        if (!Files.isDirectory(dir))
            throw new OutputRefusedException(target, "its directory " + dir + " does not exist");
        Object replaced = null;
        BasicFileAttributes existing = attributes(abs);
        if (existing != null) {
            if (existing.isSymbolicLink())
                throw new OutputRefusedException(target, "is a symbolic link; gmem does not write through links");
            if (!existing.isRegularFile()) {
                throw new OutputRefusedException(
                        target,
                        "is not a regular file ("
                                + (existing.isDirectory() ? "a directory" : "a device or other special file")
                                + "); gmem writes only regular files");
            }
            if (mode == Mode.CREATE)
                throw new OutputRefusedException(
                        target, "already exists; gmem does not overwrite it (remove it first)");
            replaced = identity(abs, existing);
        }
        for (Path in : inputs) {
            if (existing != null && in != null && Files.exists(in) && Files.isSameFile(in, abs)) {
                throw new OutputRefusedException(target, "is also the input; write the output to another file");
            }
        }
        Path partial = dir.resolve(
                abs.getFileName() + ".partial." + ProcessHandle.current().pid() + "."
                        + Long.toHexString(ThreadLocalRandom.current().nextLong() >>> 16));
        // created and registered under one lock: an interruption (abandonAll) never misses a partial file it could see
        synchronized (LIVE) {
            if (abandoned) throw new OutputRefusedException(target, "interrupted");
            Fd fd;
            try {
                fd = Fd.open(
                        partial,
                        Linux.O_RDWR | Linux.O_CREAT | Linux.O_EXCL | Linux.O_NOFOLLOW | Linux.O_CLOEXEC,
                        permissions,
                        target + " (being written as " + partial.getFileName() + ")");
            } catch (SyscallException e) {
                throw new OutputRefusedException(
                        target, "cannot create its partial file " + partial.getFileName() + ": " + e.errnoText());
            }
            OutputFile f = new OutputFile(abs, partial, fd, replaced);
            LIVE.add(f);
            return f;
        }
    }

    /** A file's identity: its inode (which a new file may reuse) and its status change time (which it cannot). */
    private static Object identity(Path p, BasicFileAttributes a) throws IOException {
        return java.util.List.of(a.fileKey(), Files.getAttribute(p, "unix:ctime", LinkOption.NOFOLLOW_LINKS));
    }

    private static BasicFileAttributes attributes(Path p) throws IOException {
        try {
            return Files.readAttributes(p, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (NoSuchFileException e) {
            return null;
        }
    }

    /** The partial file's descriptor: write the data through it. */
    public Fd fd() {
        return fd;
    }

    /** The final path, absolute. */
    public Path target() {
        return target;
    }

    public Path partialPath() {
        return partial;
    }

    /** Makes the file appear under its name; see the class notes. */
    public void commit() throws IOException {
        synchronized (LIVE) {
            if (abandoned) throw new OutputRefusedException(target, "interrupted");
            if (replaced == null) {
                try {
                    Files.createLink(target, partial);
                } catch (FileAlreadyExistsException e) {
                    throw new OutputRefusedException(
                            target, "was created by another writer meanwhile; it is left as it is");
                } catch (java.nio.file.FileSystemException | UnsupportedOperationException e) {
                    throw new OutputRefusedException(
                            target,
                            "cannot be made to appear atomically here: this file system does not make hard links ("
                                    + e.getMessage() + "); write to a tmpfs or a disk file system such as ext4 or xfs");
                }
                Files.delete(partial);
            } else {
                BasicFileAttributes now = attributes(target);
                if (now == null || !now.isRegularFile() || !replaced.equals(identity(target, now))) {
                    throw new OutputRefusedException(
                            target, "was replaced or removed by another writer meanwhile; it is left as it is");
                }
                try {
                    Files.move(partial, target, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    throw new OutputRefusedException(target, "cannot be replaced atomically (" + e.getMessage() + ")");
                }
            }
            committed = true;
            LIVE.remove(this);
        }
    }

    /** Closes the descriptor and, unless committed, deletes the partial file. Never throws. */
    @Override
    public void close() {
        fd.closeQuietly();
        synchronized (LIVE) {
            if (!committed) discard();
            LIVE.remove(this);
        }
    }

    private void discard() {
        fd.closeQuietly();
        try {
            Files.deleteIfExists(partial);
        } catch (IOException ignored) {
            // the directory went away or became unwritable: nothing else to remove
        }
    }

    /**
     * A new directory of this process's own under {@code parent}, for working files (the demo's,
     * a benchmark's): removed with what it holds by {@link #removeScratch}, or by an interruption.
     */
    public static Path scratchDirectory(Path parent, String prefix) throws IOException {
        Path dir = Files.createTempDirectory(parent, prefix);
        synchronized (LIVE) {
            SCRATCH.add(dir);
        }
        return dir;
    }

    /** Deletes a {@link #scratchDirectory} and everything in it. Never throws. */
    public static void removeScratch(Path dir) {
        synchronized (LIVE) {
            SCRATCH.remove(dir);
        }
        deleteTree(dir);
    }

    private static void deleteTree(Path dir) {
        try (var files = Files.list(dir)) {
            for (Path p : files.toList()) {
                if (Files.isDirectory(p, LinkOption.NOFOLLOW_LINKS)) deleteTree(p);
                else Files.deleteIfExists(p);
            }
            Files.deleteIfExists(dir);
        } catch (IOException ignored) {
            // already gone, or not ours to remove any more
        }
    }

    /** Deletes every partial file and scratch directory of this process and refuses every later commit: for an interruption. */
    public static void abandonAll() {
        synchronized (LIVE) {
            abandoned = true;
            for (Path dir : SCRATCH) deleteTree(dir);
            SCRATCH.clear();
            for (OutputFile f : LIVE) {
                try {
                    Files.deleteIfExists(f.partial);
                } catch (IOException ignored) {
                    // as in close
                }
            }
            LIVE.clear();
        }
    }
}
