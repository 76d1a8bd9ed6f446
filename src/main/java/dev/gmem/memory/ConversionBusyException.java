package dev.gmem.memory;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;

/**
 * A conversion to private was refused because a page of the range is still pinned (the kernel's
 * "elevated refcount": EAGAIN with {@code error_offset}). Nothing changed; retry after unpinning.
 */
public final class ConversionBusyException extends SyscallException {
    private static final long serialVersionUID = 1L;
    private final long offset;

    public ConversionBusyException(String arguments, long offset) {
        super("set attributes", arguments + ", page at offset " + offset + " is pinned", Errno.EAGAIN);
        this.offset = offset;
    }

    /** The file offset of the first pinned page of the range. */
    public long offset() {
        return offset;
    }
}
