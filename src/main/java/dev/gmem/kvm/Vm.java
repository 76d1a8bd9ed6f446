package dev.gmem.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import dev.gmem.linux.Fd;
import dev.gmem.linux.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/** A KVM virtual machine: owns the VM descriptor. Memslots and guest_memfd files are created here. */
public final class Vm implements AutoCloseable {
    private final Kvm kvm;
    private final Fd fd;

    Vm(Kvm kvm, Fd fd) {
        this.kvm = kvm;
        this.fd = fd;
    }

    public Kvm kvm() {
        return kvm;
    }

    public Fd fd() {
        return fd;
    }

    /** KVM_CHECK_EXTENSION at VM scope. */
    public int check(KvmCap cap) throws SyscallException {
        return fd.ioctl("KVM_CHECK_EXTENSION " + cap, KvmAbi.KVM_CHECK_EXTENSION, cap.number());
    }

    /**
     * KVM_CREATE_GUEST_MEMFD: a new guest_memfd file of {@code size} bytes with {@code flags}
     * (see {@link GuestMemfdFlag}). The caller owns the result.
     */
    public GuestMemfd createGuestMemfd(long size, long flags) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment args = arena.allocate(KvmAbi.CREATE_GUEST_MEMFD);
            args.set(ValueLayout.JAVA_LONG, KvmAbi.CREATE_GUEST_MEMFD.byteOffset(groupElement("size")), size);
            args.set(ValueLayout.JAVA_LONG, KvmAbi.CREATE_GUEST_MEMFD.byteOffset(groupElement("flags")), flags);
            int gfd;
            try {
                gfd = fd.ioctl("KVM_CREATE_GUEST_MEMFD", KvmAbi.KVM_CREATE_GUEST_MEMFD, args);
            } catch (SyscallException e) {
                throw new SyscallException(
                        e.call(),
                        e.arguments() + ", size=" + size + ", flags=0x" + Long.toHexString(flags),
                        e.errnoNumber());
            }
            return new GuestMemfd(Fd.adopt(gfd, "guest_memfd"), size, flags);
        }
    }

    /** KVM_SET_USER_MEMORY_REGION: a plain memslot backed by {@code userspaceAddress}; size 0 deletes the slot. */
    public void setUserMemoryRegion(int slot, int flags, long guestPhysAddr, long size, long userspaceAddress)
            throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment r = arena.allocate(KvmAbi.USERSPACE_MEMORY_REGION);
            fillRegion(r, slot, flags, guestPhysAddr, size, userspaceAddress);
            fd.ioctl("KVM_SET_USER_MEMORY_REGION", KvmAbi.KVM_SET_USER_MEMORY_REGION, r);
        }
    }

    /**
     * KVM_SET_USER_MEMORY_REGION2. With {@link KvmAbi#KVM_MEM_GUEST_MEMFD} in {@code flags} the slot
     * is backed by {@code guestMemfd} from {@code guestMemfdOffset}; {@code userspaceAddress} should
     * then be a shared mapping of the same file at the same offset, which KVM uses for its own
     * accesses (instruction emulation among them).
     */
    public void setUserMemoryRegion2(
            int slot,
            int flags,
            long guestPhysAddr,
            long size,
            long userspaceAddress,
            GuestMemfd guestMemfd,
            long guestMemfdOffset)
            throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment r = arena.allocate(KvmAbi.USERSPACE_MEMORY_REGION2);
            fillRegion(r, slot, flags, guestPhysAddr, size, userspaceAddress);
            if (guestMemfd != null) {
                r.set(ValueLayout.JAVA_LONG, KvmAbi.REGION2_GUEST_MEMFD_OFFSET, guestMemfdOffset);
                r.set(
                        ValueLayout.JAVA_INT,
                        KvmAbi.REGION2_GUEST_MEMFD,
                        guestMemfd.fd().number());
            }
            fd.ioctl("KVM_SET_USER_MEMORY_REGION2", KvmAbi.KVM_SET_USER_MEMORY_REGION2, r);
        }
    }

    private static void fillRegion(MemorySegment r, int slot, int flags, long gpa, long size, long uaddr) {
        r.set(ValueLayout.JAVA_INT, 0, slot);
        r.set(ValueLayout.JAVA_INT, 4, flags);
        r.set(ValueLayout.JAVA_LONG, 8, gpa);
        r.set(ValueLayout.JAVA_LONG, 16, size);
        r.set(ValueLayout.JAVA_LONG, 24, uaddr);
    }

    /** Closes the VM descriptor; guest_memfd files keep the VM alive until they close too. */
    @Override
    public void close() throws SyscallException {
        fd.close();
    }
}
