package dev.gmem.kvm;

/** KVM capabilities gmem asks about, with their numbers (KVM_CHECK_EXTENSION arguments). */
public enum KvmCap {
    USER_MEMORY2(231),
    MEMORY_FAULT_INFO(232),
    MEMORY_ATTRIBUTES(233),
    GUEST_MEMFD(234),
    VM_TYPES(235),
    PRE_FAULT_MEMORY(236),
    /** The bitmask of flags KVM_CREATE_GUEST_MEMFD accepts (0 on kernels before 6.18). */
    GUEST_MEMFD_FLAGS(244),
    /** Per-guest_memfd PRIVATE attribute (in-place conversion); provisional number from the unmerged v8 series. */
    GUEST_MEMFD_MEMORY_ATTRIBUTES(250);

    private final int number;

    KvmCap(int number) {
        this.number = number;
    }

    public int number() {
        return number;
    }
}
