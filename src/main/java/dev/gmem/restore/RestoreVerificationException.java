package dev.gmem.restore;

/** Restored guest memory that differs from its source; the message names the first differing page and byte. */
public final class RestoreVerificationException extends RestoreException {
    private static final long serialVersionUID = 1L;
    private final long guestAddress;

    public RestoreVerificationException(String message, long guestAddress) {
        super(message, null);
        this.guestAddress = guestAddress;
    }

    /** The guest physical address of the first differing page. */
    public long guestAddress() {
        return guestAddress;
    }
}
