package dev.gmem.uffd;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** Sizes and numbers from the guest_memfd specification §1.6. */
class UffdAbiTest {
    @Test
    void structureSizes() {
        assertThat(UffdAbi.API.byteSize()).isEqualTo(24);
        assertThat(UffdAbi.RANGE.byteSize()).isEqualTo(16);
        assertThat(UffdAbi.REGISTER.byteSize()).isEqualTo(32);
        assertThat(UffdAbi.COPY.byteSize()).isEqualTo(40);
        assertThat(UffdAbi.ZEROPAGE.byteSize()).isEqualTo(32);
        assertThat(UffdAbi.CONTINUE.byteSize()).isEqualTo(32);
        assertThat(UffdAbi.WRITEPROTECT.byteSize()).isEqualTo(24);
        assertThat(UffdAbi.POISON.byteSize()).isEqualTo(32);
        assertThat(UffdAbi.MOVE.byteSize()).isEqualTo(40);
        assertThat(UffdAbi.MSG.byteSize()).isEqualTo(32);
    }

    @Test
    void ioctlNumbers() {
        assertThat(UffdAbi.USERFAULTFD_IOC_NEW).isEqualTo(0x0000AA00L);
        assertThat(UffdAbi.UFFDIO_API).isEqualTo(0xC018AA3FL);
        assertThat(UffdAbi.UFFDIO_REGISTER).isEqualTo(0xC020AA00L);
        assertThat(UffdAbi.UFFDIO_UNREGISTER).isEqualTo(0x8010AA01L);
        assertThat(UffdAbi.UFFDIO_WAKE).isEqualTo(0x8010AA02L);
        assertThat(UffdAbi.UFFDIO_COPY).isEqualTo(0xC028AA03L);
        assertThat(UffdAbi.UFFDIO_ZEROPAGE).isEqualTo(0xC020AA04L);
        assertThat(UffdAbi.UFFDIO_MOVE).isEqualTo(0xC028AA05L);
        assertThat(UffdAbi.UFFDIO_WRITEPROTECT).isEqualTo(0xC018AA06L);
        assertThat(UffdAbi.UFFDIO_CONTINUE).isEqualTo(0xC020AA07L);
        assertThat(UffdAbi.UFFDIO_POISON).isEqualTo(0xC020AA08L);
    }

    @Test
    void featureBits() {
        assertThat(UffdFeature.EVENT_REMOVE.bit()).isEqualTo(0x8);
        assertThat(UffdFeature.MISSING_SHMEM.bit()).isEqualTo(0x20);
        assertThat(UffdFeature.THREAD_ID.bit()).isEqualTo(0x100);
        assertThat(UffdFeature.MINOR_SHMEM.bit()).isEqualTo(0x400);
        assertThat(UffdFeature.MOVE.bit()).isEqualTo(1L << 16);
        assertThat(UffdFeature.names(0x1ffffL))
                .hasSize(17)
                .startsWith("PAGEFAULT_FLAG_WP")
                .endsWith("MOVE");
        assertThat(UffdFeature.names(0x408L | (1L << 40))).containsExactly("EVENT_REMOVE", "MINOR_SHMEM", "bit 40");
        assertThat(UffdAbi.EVENT_PAGEFAULT).isEqualTo(0x12);
        assertThat(UffdAbi.EVENT_REMOVE).isEqualTo(0x15);
    }
}
