package dev.gmem.fault;

/**
 * The engine stopped serving faults on a fatal error: {@link #getCause()} is the error (a chunk's
 * checksum, an unreadable source, a failed ioctl), and the message says where it happened.
 */
public final class FaultEngineFailedException extends FaultException {
    private static final long serialVersionUID = 1L;
    private final long offset;

    FaultEngineFailedException(String where, long offset, Throwable cause) {
        super(
                where + (offset >= 0 ? " at source offset " + offset : "") + ": "
                        + (cause.getMessage() == null ? cause.toString() : cause.getMessage()),
                cause);
        this.offset = offset;
    }

    /** The source offset of the page being served when it failed, or -1. */
    public long offset() {
        return offset;
    }
}
