package dev.gmem.util;

import java.io.IOException;
import java.nio.file.Path;

/** An output gmem will not or cannot write: the message names the path and the reason (a link, a device, the input itself, a race lost). */
public final class OutputRefusedException extends IOException {
    private static final long serialVersionUID = 1L;
    private final transient Path path;

    public OutputRefusedException(Path path, String reason) {
        super((path.toString().isEmpty() ? "''" : path.toString()) + ": " + reason);
        this.path = path;
    }

    public Path path() {
        return path;
    }
}
