package dev.gmem.snapshot;

import java.io.IOException;
import java.nio.file.Path;

/**
 * A snapshot or memory file that cannot be used as it is: truncated, of another format or version,
 * inconsistent, or corrupted. The message names the file, where the problem is (a chunk, an
 * offset) and what was expected; nothing has been written to guest memory when it is thrown by a
 * reader's validation.
 */
public sealed class SnapshotFormatException extends IOException permits ChunkChecksumException, SourceChangedException {
    private static final long serialVersionUID = 1L;

    private final transient Path file; // a Path is not serializable

    public SnapshotFormatException(Path file, String problem) {
        super(file + ": " + problem);
        this.file = file;
    }

    public SnapshotFormatException(Path file, String problem, Throwable cause) {
        super(file + ": " + problem, cause);
        this.file = file;
    }

    public Path file() {
        return file;
    }
}
