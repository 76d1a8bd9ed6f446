package dev.gmem.restore;

import java.io.IOException;

/**
 * Why a restore did not deliver good guest memory: it failed on the way ({@link RestoreFailedException}),
 * the memory differs from its source ({@link RestoreVerificationException}), the source could not be
 * read ({@link SourceUnreadableException}), or it does not fit the guest memory
 * ({@link SourceMismatchException}). Errors of the snapshot itself are
 * {@link dev.gmem.snapshot.SnapshotFormatException}s.
 */
public abstract sealed class RestoreException extends IOException
        permits RestoreFailedException,
                RestoreVerificationException,
                SourceUnreadableException,
                SourceMismatchException {
    private static final long serialVersionUID = 1L;

    RestoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
