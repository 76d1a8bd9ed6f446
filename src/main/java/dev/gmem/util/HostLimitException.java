package dev.gmem.util;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;
import java.io.IOException;
import java.nio.file.Path;

/**
 * A sound input asks for more than this host can hold: page state beyond the Java heap, a file
 * larger than the file system allows. Not a fault of the input (the snapshot format allows a
 * guest of 4 PiB), so the command line gives it exit status 3, as for a feature the host lacks.
 */
public final class HostLimitException extends IOException {
    private static final long serialVersionUID = 1L;

    public HostLimitException(String message) {
        super(message);
    }

    public HostLimitException(String message, Throwable cause) {
        super(message, cause);
    }

    /**
     * Sizes {@code out}, the new file at {@code path}, to {@code size} bytes: a file system that
     * holds no file that large (EFBIG) is this host's limit, named with both.
     */
    public static void truncate(dev.gmem.linux.Fd out, Path path, long size) throws IOException {
        try {
            out.truncate(size);
        } catch (SyscallException e) {
            if (!e.is(Errno.EFBIG)) throw e;
            throw new HostLimitException(
                    path + ": the file system holds no file of " + size + " bytes (EFBIG, File too large)", e);
        }
    }
}
