package dev.gmem.snapshot;

import java.nio.file.Path;

/**
 * A source file that changed under gmem while it was read (truncated, or grown, by another
 * process): what gmem had validated no longer holds, so nothing read from it is used.
 */
public final class SourceChangedException extends SnapshotFormatException {
    private static final long serialVersionUID = 1L;

    SourceChangedException(Path file, String what) {
        super(file, "changed while being read: " + what + " (a memory file must not be modified while gmem reads it)");
    }
}
