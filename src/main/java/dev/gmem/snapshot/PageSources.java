package dev.gmem.snapshot;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.function.LongConsumer;

/** Opens a memory file of either kind, by its content: a gmem snapshot starts with its magic; anything else is raw. */
public final class PageSources {
    private PageSources() {}

    /** Whether {@code path} starts with the snapshot magic. */
    public static boolean isSnapshot(Path path) throws IOException {
        if (!Files.isRegularFile(path)) throw new SnapshotFormatException(path, Files.exists(path) ? "not a regular file" : "no such file");
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            ByteBuffer b = ByteBuffer.allocate(8);
            while (b.hasRemaining() && ch.read(b) >= 0) {}
            return SnapshotFormat.hasMagic(b.flip());
        }
    }

    /**
     * A {@link Snapshot} if {@code path} is one (then {@code regions} must be null: a snapshot
     * records its own), else a {@link RawImage} with {@code regions} (null: one region from guest
     * address 0), scanned on {@code threads} threads.
     */
    public static PageSource open(Path path, List<Region> regions, int threads, LongConsumer scanProgress) throws IOException {
        if (isSnapshot(path)) {
            if (regions != null) throw new SnapshotFormatException(path, "is a gmem snapshot, which records its own regions: --regions applies to raw files");
            return Snapshot.open(path);
        }
        return RawImage.open(path, regions, threads, scanProgress);
    }
}
