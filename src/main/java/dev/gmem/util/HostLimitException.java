package dev.gmem.util;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;
import java.io.IOException;

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
     * Sizes {@code out}, a new file, to {@code size} bytes: a file system that holds no file that
     * large (EFBIG) is this host's limit, named with the file (its descriptor's name) and the size.
     */
    public static void truncate(dev.gmem.linux.Fd out, long size) throws IOException {
        try {
            out.truncate(size);
        } catch (SyscallException e) {
            if (!e.is(Errno.EFBIG)) throw e;
            throw new HostLimitException(
                    out.name() + ": the file system holds no file of " + size + " bytes (EFBIG, File too large)", e);
        }
    }
}
