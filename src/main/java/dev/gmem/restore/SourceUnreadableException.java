package dev.gmem.restore;

/** The memory a restore copies from could not be read past {@link #offset()} (for example a source file truncated under it). */
public final class SourceUnreadableException extends RestoreException {
    private static final long serialVersionUID = 1L;
    private final long offset;

    public SourceUnreadableException(String message, long offset) {
        super(message, null);
        this.offset = offset;
    }

    /** The guest memory offset where the copy stopped. */
    public long offset() {
        return offset;
    }
}
