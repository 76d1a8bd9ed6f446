package dev.gmem.kvm;

import dev.gmem.linux.Fd;
import dev.gmem.linux.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.OptionalLong;

/**
 * A KVM guest_memfd file, as created by {@link Vm#createGuestMemfd}: owns its descriptor and
 * remembers the size and flags it was created with (the kernel offers no way to ask).
 */
public final class GuestMemfd implements AutoCloseable {
    private final Fd fd;
    private final long size;
    private final long flags;

    GuestMemfd(Fd fd, long size, long flags) {
        this.fd = fd;
        this.size = size;
        this.flags = flags;
    }

    public Fd fd() {
        return fd;
    }

    public long size() {
        return size;
    }

    public long flags() {
        return flags;
    }

    public boolean has(GuestMemfdFlag flag) {
        return (flags & flag.bit()) != 0;
    }

    /**
     * KVM_SET_MEMORY_ATTRIBUTES2 on this file (the unmerged in-place conversion series): sets
     * {@code attributes} on {@code [offset, offset+length)}. Returns empty on success; when the
     * kernel refuses with EAGAIN because a page is still referenced, returns the offset of the first
     * such page. Other failures raise; ENOTTY means the kernel has no in-place conversion.
     */
    public OptionalLong setMemoryAttributes(long offset, long length, long attributes) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment a = arena.allocate(KvmAbi.MEMORY_ATTRIBUTES2);
            a.set(ValueLayout.JAVA_LONG, 0, offset);
            a.set(ValueLayout.JAVA_LONG, 8, length);
            a.set(ValueLayout.JAVA_LONG, 16, attributes);
            try {
                fd.ioctl("KVM_SET_MEMORY_ATTRIBUTES2", KvmAbi.KVM_SET_MEMORY_ATTRIBUTES2, a);
                return OptionalLong.empty();
            } catch (SyscallException e) {
                if (e.is(dev.gmem.linux.Errno.EAGAIN))
                    return OptionalLong.of(a.get(ValueLayout.JAVA_LONG, KvmAbi.ATTRIBUTES2_ERROR_OFFSET));
                throw e;
            }
        }
    }

    @Override
    public void close() throws SyscallException {
        fd.close();
    }

    @Override
    public String toString() {
        return "GuestMemfd[" + fd + ", size=" + size + ", flags="
                + GuestMemfdFlag.decode(flags).names() + "]";
    }
}
