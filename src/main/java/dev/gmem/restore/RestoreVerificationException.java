package dev.gmem.restore;

import java.io.IOException;

/** Restored guest memory that differs from its source; the message names the first differing page and byte. */
public final class RestoreVerificationException extends IOException {
    private final long guestAddress;

    public RestoreVerificationException(String message, long guestAddress) {
        super(message);
        this.guestAddress = guestAddress;
    }

    /** The guest physical address of the first differing page. */
    public long guestAddress() {
        return guestAddress;
    }
}
