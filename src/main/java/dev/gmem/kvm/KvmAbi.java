package dev.gmem.kvm;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;

import dev.gmem.linux.Ioc;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;

/**
 * The KVM binary interface gmem uses (x86_64 values; see the guest_memfd specification §1): ioctl
 * numbers, structure layouts and flags. Sizes and numbers are unit-tested against the specification.
 */
public final class KvmAbi {
    private KvmAbi() {}

    public static final int KVMIO = 0xAE;
    /** The only API version KVM has ever reported. */
    public static final int API_VERSION = 12;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;

    /** {@code struct kvm_userspace_memory_region}: 32 bytes. */
    public static final StructLayout USERSPACE_MEMORY_REGION = MemoryLayout.structLayout(
            U32.withName("slot"), U32.withName("flags"),
            U64.withName("guest_phys_addr"), U64.withName("memory_size"), U64.withName("userspace_addr"));

    /** {@code struct kvm_userspace_memory_region2}: 160 bytes. */
    public static final StructLayout USERSPACE_MEMORY_REGION2 = MemoryLayout.structLayout(
            U32.withName("slot"), U32.withName("flags"),
            U64.withName("guest_phys_addr"), U64.withName("memory_size"), U64.withName("userspace_addr"),
            U64.withName("guest_memfd_offset"), U32.withName("guest_memfd"), U32.withName("pad1"),
            MemoryLayout.sequenceLayout(14, U64).withName("pad2"));

    /** {@code struct kvm_create_guest_memfd}: 64 bytes. */
    public static final StructLayout CREATE_GUEST_MEMFD = MemoryLayout.structLayout(
            U64.withName("size"), U64.withName("flags"), MemoryLayout.sequenceLayout(6, U64).withName("reserved"));

    /** {@code struct kvm_memory_attributes} (VM ioctl): 32 bytes. */
    public static final StructLayout MEMORY_ATTRIBUTES = MemoryLayout.structLayout(
            U64.withName("address"), U64.withName("size"), U64.withName("attributes"), U64.withName("flags"));

    /** {@code struct kvm_memory_attributes2} (guest_memfd ioctl, in-place conversion v8, unmerged): 128 bytes. */
    public static final StructLayout MEMORY_ATTRIBUTES2 = MemoryLayout.structLayout(
            U64.withName("offset"), U64.withName("size"), U64.withName("attributes"), U64.withName("flags"),
            U64.withName("error_offset"), MemoryLayout.sequenceLayout(11, U64).withName("reserved"));

    public static final long REGION2_GUEST_MEMFD_OFFSET = USERSPACE_MEMORY_REGION2.byteOffset(groupElement("guest_memfd_offset"));
    public static final long REGION2_GUEST_MEMFD = USERSPACE_MEMORY_REGION2.byteOffset(groupElement("guest_memfd"));
    public static final long ATTRIBUTES2_ERROR_OFFSET = MEMORY_ATTRIBUTES2.byteOffset(groupElement("error_offset"));

    // System ioctls.
    public static final long KVM_GET_API_VERSION = Ioc.io(KVMIO, 0x00);
    public static final long KVM_CREATE_VM = Ioc.io(KVMIO, 0x01);
    public static final long KVM_CHECK_EXTENSION = Ioc.io(KVMIO, 0x03);
    public static final long KVM_GET_VCPU_MMAP_SIZE = Ioc.io(KVMIO, 0x04);
    // VM ioctls.
    public static final long KVM_CREATE_VCPU = Ioc.io(KVMIO, 0x41);
    public static final long KVM_SET_USER_MEMORY_REGION = Ioc.iow(KVMIO, 0x46, USERSPACE_MEMORY_REGION.byteSize());
    public static final long KVM_SET_USER_MEMORY_REGION2 = Ioc.iow(KVMIO, 0x49, USERSPACE_MEMORY_REGION2.byteSize());
    public static final long KVM_SET_MEMORY_ATTRIBUTES = Ioc.iow(KVMIO, 0xd2, MEMORY_ATTRIBUTES.byteSize());
    public static final long KVM_CREATE_GUEST_MEMFD = Ioc.iowr(KVMIO, 0xd4, CREATE_GUEST_MEMFD.byteSize());
    // guest_memfd ioctls (unmerged in-place conversion series, v2 to v8).
    public static final long KVM_SET_MEMORY_ATTRIBUTES2 = Ioc.iowr(KVMIO, 0xd2, MEMORY_ATTRIBUTES2.byteSize());

    // Memslot flags.
    public static final int KVM_MEM_LOG_DIRTY_PAGES = 1;
    public static final int KVM_MEM_READONLY = 1 << 1;
    public static final int KVM_MEM_GUEST_MEMFD = 1 << 2;

    /** The attribute bit for private memory. */
    public static final long KVM_MEMORY_ATTRIBUTE_PRIVATE = 1L << 3;

    /** x86 VM type 0: a default (non-confidential) VM. */
    public static final int VM_TYPE_DEFAULT = 0;
}
