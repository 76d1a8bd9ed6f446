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

    // ---- vCPU state (x86_64), struct kvm_regs and struct kvm_sregs ----
    /** struct kvm_regs: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags, 18 u64. */
    public static final long REGS_BYTES = 18 * 8;

    public static final String[] REG_NAMES = {
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
        "rip", "rflags"
    };
    public static final int RAX = 0, RBX = 1, RCX = 2, RDX = 3, RSI = 4, RDI = 5, RSP = 6, RIP = 16, RFLAGS = 17;
    /** struct kvm_segment: base u64, limit u32, selector u16, type, present, dpl, db, s, l, g, avl, unusable, padding (u8 each). */
    public static final long SEGMENT_BYTES = 24;
    /** struct kvm_sregs: cs ds es fs gs ss tr ldt (segments), gdt idt (dtables of 16 bytes), cr0 cr2 cr3 cr4 cr8 efer apic_base, interrupt_bitmap[4]. */
    public static final long SREGS_BYTES = 8 * SEGMENT_BYTES + 2 * 16 + 7 * 8 + 4 * 8;

    public static final long SREGS_CS = 0,
            SREGS_DS = 24,
            SREGS_ES = 48,
            SREGS_FS = 72,
            SREGS_GS = 96,
            SREGS_SS = 120,
            SREGS_TR = 144,
            SREGS_LDT = 168;
    public static final long SREGS_GDT = 192, SREGS_IDT = 208;
    public static final long SREGS_CR0 = 224,
            SREGS_CR2 = 232,
            SREGS_CR3 = 240,
            SREGS_CR4 = 248,
            SREGS_CR8 = 256,
            SREGS_EFER = 264;

    // ---- struct kvm_run, the shared page of a vCPU ----
    public static final long RUN_IMMEDIATE_EXIT = 1;
    public static final long RUN_EXIT_REASON = 8;
    /** The exit union starts at 32: io {u8 direction, u8 size, u16 port, u32 count, u64 data_offset}. */
    public static final long RUN_IO_DIRECTION = 32,
            RUN_IO_SIZE = 33,
            RUN_IO_PORT = 34,
            RUN_IO_COUNT = 36,
            RUN_IO_DATA_OFFSET = 40;
    /** fail_entry {u64 hardware_entry_failure_reason, u32 cpu}; internal {u32 suberror, u32 ndata, u64 data[16]}. */
    public static final long RUN_FAIL_ENTRY_REASON = 32,
            RUN_INTERNAL_SUBERROR = 32,
            RUN_INTERNAL_NDATA = 36,
            RUN_INTERNAL_DATA = 40;
    /** mmio {u64 phys_addr, u8 data[8], u32 len, u8 is_write}; memory_fault {u64 flags, u64 gpa, u64 size}. */
    public static final long RUN_MMIO_PHYS_ADDR = 32, RUN_MEMORY_FAULT_GPA = 40;

    public static final int KVM_EXIT_IO_OUT = 1;
    /** The only API version KVM has ever reported. */
    public static final int API_VERSION = 12;

    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG;

    /** {@code struct kvm_userspace_memory_region}: 32 bytes. */
    public static final StructLayout USERSPACE_MEMORY_REGION = MemoryLayout.structLayout(
            U32.withName("slot"),
            U32.withName("flags"),
            U64.withName("guest_phys_addr"),
            U64.withName("memory_size"),
            U64.withName("userspace_addr"));

    /** {@code struct kvm_userspace_memory_region2}: 160 bytes. */
    public static final StructLayout USERSPACE_MEMORY_REGION2 = MemoryLayout.structLayout(
            U32.withName("slot"),
            U32.withName("flags"),
            U64.withName("guest_phys_addr"),
            U64.withName("memory_size"),
            U64.withName("userspace_addr"),
            U64.withName("guest_memfd_offset"),
            U32.withName("guest_memfd"),
            U32.withName("pad1"),
            MemoryLayout.sequenceLayout(14, U64).withName("pad2"));

    /** {@code struct kvm_create_guest_memfd}: 64 bytes. */
    public static final StructLayout CREATE_GUEST_MEMFD = MemoryLayout.structLayout(
            U64.withName("size"),
            U64.withName("flags"),
            MemoryLayout.sequenceLayout(6, U64).withName("reserved"));

    /** {@code struct kvm_memory_attributes} (VM ioctl): 32 bytes. */
    public static final StructLayout MEMORY_ATTRIBUTES = MemoryLayout.structLayout(
            U64.withName("address"), U64.withName("size"), U64.withName("attributes"), U64.withName("flags"));

    /** {@code struct kvm_memory_attributes2} (guest_memfd ioctl, in-place conversion v8, unmerged): 128 bytes. */
    public static final StructLayout MEMORY_ATTRIBUTES2 = MemoryLayout.structLayout(
            U64.withName("offset"),
            U64.withName("size"),
            U64.withName("attributes"),
            U64.withName("flags"),
            U64.withName("error_offset"),
            MemoryLayout.sequenceLayout(11, U64).withName("reserved"));

    public static final long REGION2_GUEST_MEMFD_OFFSET =
            USERSPACE_MEMORY_REGION2.byteOffset(groupElement("guest_memfd_offset"));
    public static final long REGION2_GUEST_MEMFD = USERSPACE_MEMORY_REGION2.byteOffset(groupElement("guest_memfd"));
    public static final long ATTRIBUTES2_ERROR_OFFSET = MEMORY_ATTRIBUTES2.byteOffset(groupElement("error_offset"));

    // System ioctls.
    public static final long KVM_GET_API_VERSION = Ioc.io(KVMIO, 0x00);
    public static final long KVM_CREATE_VM = Ioc.io(KVMIO, 0x01);
    public static final long KVM_CHECK_EXTENSION = Ioc.io(KVMIO, 0x03);
    public static final long KVM_GET_VCPU_MMAP_SIZE = Ioc.io(KVMIO, 0x04);
    // VM ioctls.
    public static final long KVM_CREATE_VCPU = Ioc.io(KVMIO, 0x41);
    public static final long KVM_RUN = Ioc.io(KVMIO, 0x80);
    public static final long KVM_GET_REGS = Ioc.ior(KVMIO, 0x81, REGS_BYTES);
    public static final long KVM_SET_REGS = Ioc.iow(KVMIO, 0x82, REGS_BYTES);
    public static final long KVM_GET_SREGS = Ioc.ior(KVMIO, 0x83, SREGS_BYTES);
    public static final long KVM_SET_SREGS = Ioc.iow(KVMIO, 0x84, SREGS_BYTES);
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

    /** Exit reasons of KVM_RUN (kvm_run.exit_reason), by number. */
    public static String exitReason(int reason) {
        return switch (reason) {
            case 0 -> "KVM_EXIT_UNKNOWN";
            case 1 -> "KVM_EXIT_EXCEPTION";
            case 2 -> "KVM_EXIT_IO";
            case 3 -> "KVM_EXIT_HYPERCALL";
            case 4 -> "KVM_EXIT_DEBUG";
            case 5 -> "KVM_EXIT_HLT";
            case 6 -> "KVM_EXIT_MMIO";
            case 8 -> "KVM_EXIT_SHUTDOWN";
            case 9 -> "KVM_EXIT_FAIL_ENTRY";
            case 10 -> "KVM_EXIT_INTR";
            case 17 -> "KVM_EXIT_INTERNAL_ERROR";
            case 24 -> "KVM_EXIT_SYSTEM_EVENT";
            case 39 -> "KVM_EXIT_MEMORY_FAULT";
            default -> "exit reason " + reason;
        };
    }

    public static final int EXIT_IO = 2,
            EXIT_HLT = 5,
            EXIT_MMIO = 6,
            EXIT_SHUTDOWN = 8,
            EXIT_FAIL_ENTRY = 9,
            EXIT_INTR = 10,
            EXIT_INTERNAL_ERROR = 17,
            EXIT_MEMORY_FAULT = 39;
}
