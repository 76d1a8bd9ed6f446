package dev.gmem.kvm;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** Sizes and numbers from the guest_memfd specification §1.2 to §1.5. */
class KvmAbiTest {
    @Test
    void structureSizes() {
        assertThat(KvmAbi.USERSPACE_MEMORY_REGION.byteSize()).isEqualTo(32);
        assertThat(KvmAbi.USERSPACE_MEMORY_REGION2.byteSize()).isEqualTo(160);
        assertThat(KvmAbi.REGION2_GUEST_MEMFD_OFFSET).isEqualTo(32);
        assertThat(KvmAbi.REGION2_GUEST_MEMFD).isEqualTo(40);
        assertThat(KvmAbi.CREATE_GUEST_MEMFD.byteSize()).isEqualTo(64);
        assertThat(KvmAbi.MEMORY_ATTRIBUTES.byteSize()).isEqualTo(32);
        assertThat(KvmAbi.MEMORY_ATTRIBUTES2.byteSize()).isEqualTo(128);
        assertThat(KvmAbi.ATTRIBUTES2_ERROR_OFFSET).isEqualTo(32);
    }

    @Test
    void ioctlNumbers() {
        assertThat(KvmAbi.KVM_GET_API_VERSION).isEqualTo(0x0000AE00L);
        assertThat(KvmAbi.KVM_CREATE_VM).isEqualTo(0x0000AE01L);
        assertThat(KvmAbi.KVM_CHECK_EXTENSION).isEqualTo(0x0000AE03L);
        assertThat(KvmAbi.KVM_GET_VCPU_MMAP_SIZE).isEqualTo(0x0000AE04L);
        assertThat(KvmAbi.KVM_CREATE_VCPU).isEqualTo(0x0000AE41L);
        assertThat(KvmAbi.KVM_SET_USER_MEMORY_REGION).isEqualTo(0x4020AE46L);
        assertThat(KvmAbi.KVM_SET_USER_MEMORY_REGION2).isEqualTo(0x40A0AE49L);
        assertThat(KvmAbi.KVM_SET_MEMORY_ATTRIBUTES).isEqualTo(0x4020AED2L);
        assertThat(KvmAbi.KVM_CREATE_GUEST_MEMFD).isEqualTo(0xC040AED4L);
        assertThat(KvmAbi.KVM_SET_MEMORY_ATTRIBUTES2).isEqualTo(0xC080AED2L);
    }

    @Test
    void flagsAndCapabilities() {
        assertThat(KvmAbi.KVM_MEM_GUEST_MEMFD).isEqualTo(4);
        assertThat(KvmAbi.KVM_MEMORY_ATTRIBUTE_PRIVATE).isEqualTo(8);
        assertThat(GuestMemfdFlag.MMAP.bit()).isEqualTo(1);
        assertThat(GuestMemfdFlag.INIT_SHARED.bit()).isEqualTo(2);
        assertThat(KvmCap.GUEST_MEMFD.number()).isEqualTo(234);
        assertThat(KvmCap.GUEST_MEMFD_FLAGS.number()).isEqualTo(244);
        assertThat(KvmCap.USER_MEMORY2.number()).isEqualTo(231);
    }

    @Test
    void flagMasksDecodeByNameWithUnknownBitsAsNumbers() {
        assertThat(GuestMemfdFlag.decode(3).names()).containsExactly("MMAP", "INIT_SHARED");
        GuestMemfdFlag.Decoded d = GuestMemfdFlag.decode(0b1101L | (1L << 63));
        assertThat(d.known()).containsExactly(GuestMemfdFlag.MMAP);
        assertThat(d.unknownBits()).containsExactly(2, 3, 63);
        assertThat(d.names()).containsExactly("MMAP", "bit 2", "bit 3", "bit 63");
        assertThat(GuestMemfdFlag.decode(0).names()).isEmpty();
    }
}
