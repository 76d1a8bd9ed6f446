package dev.gmem.restore;

/** A source that does not fit the guest memory it is restored into: too large, or of another page size. */
public final class SourceMismatchException extends RestoreException {
    private static final long serialVersionUID = 1L;

    public SourceMismatchException(String message) {
        super(message, null);
    }
}
