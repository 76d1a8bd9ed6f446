package dev.gmem.restore;

/** A restore that stopped before every page was in place; {@link #getCause()} is why (a corrupt chunk, a failed ioctl, a time-out has none). */
public final class RestoreFailedException extends RestoreException {
    private static final long serialVersionUID = 1L;

    public RestoreFailedException(String message, Throwable cause) {
        super(message, cause);
    }
}
