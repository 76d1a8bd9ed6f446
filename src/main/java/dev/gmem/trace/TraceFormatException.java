package dev.gmem.trace;

import java.io.IOException;
import java.nio.file.Path;

/** A file that is not a gmem trace gmem can read: another format or version, damaged, or cut short. The message names the file. */
public final class TraceFormatException extends IOException {
    private static final long serialVersionUID = 1L;

    public TraceFormatException(Path file, String problem) {
        super(file + ": " + problem);
    }
}
