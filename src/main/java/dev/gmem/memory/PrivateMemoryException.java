package dev.gmem.memory;

import java.io.IOException;

/**
 * The host tried to reach a private page through a host mapping. In C this is a SIGBUS; through
 * gmem's checked accessors it is this exception, and the raw mapping keeps the page PROT_NONE.
 */
public final class PrivateMemoryException extends IOException {
    private static final long serialVersionUID = 1L;
    private final long offset;

    public PrivateMemoryException(long offset) {
        super("page at offset " + offset + " is private: the host may not access it (convert it to shared first)");
        this.offset = offset;
    }

    /** The file offset of the first private page the access touched. */
    public long offset() {
        return offset;
    }
}
