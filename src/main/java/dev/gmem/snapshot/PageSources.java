package dev.gmem.snapshot;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * Opens a memory file of either kind. By content ({@link Format#AUTO}): a file that starts with
 * the snapshot magic is a gmem snapshot; one that carries other signs of a snapshot (most of the
 * magic, the header's version and size fields, a manifest where the header points or near the
 * end) is a damaged snapshot and is refused, never read as a raw memory file; anything else is
 * raw. {@link Format#RAW} and {@link Format#SNAPSHOT} force either.
 */
public final class PageSources {
    private static final int TAIL_SEARCH = 4 << 20;

    private PageSources() {}

    /** How to read an input. */
    public enum Format {
        AUTO,
        RAW,
        SNAPSHOT;

        /** "auto", "raw" or "snapshot", in any case. */
        public static Format parse(String s) {
            for (Format f : values()) {
                if (f.name().equalsIgnoreCase(s.strip())) return f;
            }
            throw new IllegalArgumentException("unknown format '" + s + "': use auto, raw or snapshot");
        }
    }

    /**
     * Fails with the file and the reason when {@code path} cannot be an input: no such file, a
     * dangling symbolic link, a directory or other file that is not regular, or not readable.
     */
    public static void checkInput(Path path) throws IOException {
        if (path.toString().isEmpty()) throw new FileSystemException(path.toString(), null, "the input path is empty");
        if (!Files.exists(path)) {
            if (Files.isSymbolicLink(path)) {
                throw new FileSystemException(
                        path.toString(),
                        null,
                        "a dangling symbolic link (to " + Files.readSymbolicLink(path) + ", which does not exist)");
            }
            throw new NoSuchFileException(path.toString(), null, "no such file");
        }
        if (Files.isDirectory(path))
            throw new FileSystemException(path.toString(), null, "is a directory, not a memory file");
        if (!Files.isRegularFile(path))
            throw new FileSystemException(
                    path.toString(), null, "is not a regular file (a device, a pipe or a socket)");
        if (!Files.isReadable(path)) throw new AccessDeniedException(path.toString(), null, "permission denied");
    }

    /** Whether {@code path} is a gmem snapshot (false: a raw file). @throws SnapshotFormatException for a damaged snapshot */
    public static boolean isSnapshot(Path path) throws IOException {
        checkInput(path);
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            ByteBuffer head =
                    ByteBuffer.allocate(SnapshotFormat.HEADER_CRC_AT + 4).order(ByteOrder.LITTLE_ENDIAN);
            while (head.hasRemaining() && ch.read(head) >= 0) {}
            head.flip();
            if (SnapshotFormat.hasMagic(head)) return true;
            String sign = snapshotSign(ch, head);
            if (sign != null) {
                throw new SnapshotFormatException(
                        path,
                        "a damaged gmem snapshot (" + sign
                                + ", but its header's magic is wrong); it is not read as a raw"
                                + " memory file (--format raw reads it as one)");
            }
            return false;
        }
    }

    /** A sign that a file without the magic is a snapshot all the same, or null. */
    private static String snapshotSign(FileChannel ch, ByteBuffer head) throws IOException {
        int same = 0;
        for (int i = 0; i < Math.min(head.limit(), SnapshotFormat.MAGIC.length); i++)
            same += head.get(i) == SnapshotFormat.MAGIC[i] ? 1 : 0;
        if (same >= 4) return same + " of the 8 bytes of the snapshot magic are in place";
        if (head.limit() >= 16
                && (head.getInt(8) == SnapshotFormat.VERSION || head.getInt(8) == SnapshotFormat.VERSION_ATTACHMENTS)
                && head.getInt(12) == SnapshotFormat.HEADER_SIZE) {
            return "its header has the version and size of a gmem snapshot header";
        }
        long size = ch.size();
        if (head.limit() >= 24) {
            long manifest = head.getLong(16);
            if (manifest > 0
                    && manifest <= size - SnapshotFormat.MANIFEST_MAGIC.length
                    && startsWith(ch, manifest, SnapshotFormat.MANIFEST_MAGIC)) {
                return "its header points at a gmem manifest";
            }
        }
        long from = Math.max(0, size - TAIL_SEARCH);
        ByteBuffer tail = ByteBuffer.allocate((int) (size - from));
        while (tail.hasRemaining() && ch.read(tail, from + tail.position()) >= 0) {}
        byte[] t = tail.array();
        byte[] m = SnapshotFormat.MANIFEST_MAGIC;
        outer:
        for (int i = 0; i + m.length <= tail.position(); i++) {
            for (int j = 0; j < m.length; j++) if (t[i + j] != m[j]) continue outer;
            return "it holds a gmem manifest at offset " + (from + i);
        }
        return null;
    }

    private static boolean startsWith(FileChannel ch, long at, byte[] bytes) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(bytes.length);
        while (b.hasRemaining() && ch.read(b, at + b.position()) >= 0) {}
        return !b.hasRemaining() && java.util.Arrays.equals(b.array(), bytes);
    }

    /** As {@link #open(Path, List, int, LongConsumer, Format)} by content ({@link Format#AUTO}). */
    public static PageSource open(Path path, List<Region> regions, int threads, LongConsumer scanProgress)
            throws IOException {
        return open(path, regions, threads, scanProgress, Format.AUTO);
    }

    /**
     * A {@link Snapshot} if {@code path} is one (then {@code regions} must be null: a snapshot
     * records its own), else a {@link RawImage} with {@code regions} (null: one region from guest
     * address 0), scanned on {@code threads} threads. {@code format} forces the kind.
     */
    public static PageSource open(
            Path path, List<Region> regions, int threads, LongConsumer scanProgress, Format format) throws IOException {
        boolean snapshot = switch (format) {
            case AUTO -> isSnapshot(path);
            case SNAPSHOT -> true;
            case RAW -> {
                checkInput(path);
                yield false;
            }
        };
        if (snapshot) {
            if (regions != null)
                throw new SnapshotFormatException(
                        path, "is a gmem snapshot, which records its own regions: --regions applies to raw files");
            return Snapshot.open(path);
        }
        return RawImage.open(path, regions, threads, scanProgress);
    }
}
