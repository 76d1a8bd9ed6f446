package dev.gmem.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.testing.Leaks;
import java.lang.foreign.ValueLayout;
import org.junit.jupiter.api.Test;

class MappingTest {
    private static final long PAGE = Posix.pageSize();

    @Test
    void sharedMappingSeesTheFileAndUnmapsOnClose() throws Exception {
        long address;
        Mapping m;
        try (Fd fd = Fd.memfd("gmem-map-test", Linux.MFD_CLOEXEC)) {
            fd.truncate(8 * PAGE);
            m = Mapping.shared(fd, 8 * PAGE);
            address = m.address();
            m.segment().set(ValueLayout.JAVA_LONG, 3 * PAGE, 0x1122334455667788L);
        }
        // The mapping outlives the descriptor (it holds its own reference to the file).
        assertThat(m.segment().get(ValueLayout.JAVA_LONG, 3 * PAGE)).isEqualTo(0x1122334455667788L);
        assertThat(Leaks.isMapped(address)).isTrue();
        assertThat(Leaks.mappingsNamed("memfd:gmem-map-test")).isEqualTo(1);
        m.close();
        m.close(); // idempotent
        assertThat(m.isOpen()).isFalse();
        assertThat(Leaks.isMapped(address)).isFalse();
        assertThat(Leaks.mappingsNamed("memfd:gmem-map-test")).isZero();
        // The segment refuses access instead of touching unmapped memory.
        assertThatThrownBy(() -> m.segment().get(ValueLayout.JAVA_LONG, 0)).isInstanceOf(IllegalStateException.class);
    }

    /**
     * Memory a system call is using is never unmapped under it: a write from a mapping, blocked on a
     * full pipe, holds the mapping; closing it fails until the call returns, and the data arrives whole.
     */
    @Test
    void aMappingInUseByABlockedCallIsNotUnmappedUnderIt() throws Exception {
        long length = 1 << 20; // far more than a pipe holds: the write blocks
        Mapping m = Mapping.anonymous(length);
        for (long i = 0; i < length; i += 8) m.segment().set(ValueLayout.JAVA_LONG, i, i * 31);
        Fd[] pipe = Fd.pipe(0);
        // the pipe closes first, whatever happens: a writer still blocked then fails (EPIPE) and the pool can end
        try (var pool = java.util.concurrent.Executors.newSingleThreadExecutor();
                Fd r = pipe[0];
                Fd w = pipe[1]) {
            var written = pool.submit(() -> {
                long done = 0;
                while (done < length) done += w.write(m.segment().asSlice(done));
                return done;
            });
            // the writer is inside write(2) once the pipe is full
            long deadline = System.nanoTime() + 10_000_000_000L;
            while (pipeBytes(r) < 65536 && System.nanoTime() < deadline) Thread.sleep(5);
            Thread.sleep(50);
            assertThatThrownBy(m::close).isInstanceOf(IllegalStateException.class);
            assertThat(m.isOpen()).isTrue();
            try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
                java.lang.foreign.MemorySegment buf = a.allocate(length);
                long got = 0;
                while (got < length) got += r.read(buf.asSlice(got));
                assertThat(written.get(10, java.util.concurrent.TimeUnit.SECONDS))
                        .isEqualTo(length);
                assertThat(buf.mismatch(m.segment())).isEqualTo(-1);
            }
        }
        m.close();
        assertThat(m.isOpen()).isFalse();
    }

    /** Bytes waiting in a pipe (FIONREAD). */
    private static int pipeBytes(Fd r) throws Exception {
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            java.lang.foreign.MemorySegment n = a.allocate(ValueLayout.JAVA_INT);
            r.ioctl("FIONREAD", 0x541B, n);
            return n.get(ValueLayout.JAVA_INT, 0);
        }
    }

    @Test
    void manyMappingsLeaveNothingBehind() throws Exception {
        Leaks.Fds fdsBefore = Leaks.fds();
        for (int i = 0; i < 200; i++) {
            try (Fd fd = Fd.memfd("gmem-map-churn", Linux.MFD_CLOEXEC);
                    Mapping m = Mapping.shared(fd, PAGE)) {
                fd.truncate(PAGE);
                m.segment().set(ValueLayout.JAVA_INT, 0, i);
            }
        }
        assertThat(Leaks.mappingsNamed("memfd:gmem-map-churn")).isZero();
        assertThat(fdsBefore.opened()).isEmpty();
    }

    @Test
    void adviseProtectAndResidency() throws Exception {
        try (Fd fd = Fd.memfd("gmem-map-advise", Linux.MFD_CLOEXEC)) {
            fd.truncate(4 * PAGE);
            try (Mapping m = Mapping.shared(fd, 4 * PAGE)) {
                assertThat(m.residency(0, 4 * PAGE, PAGE)).containsOnly(0);
                m.advise(PAGE, 2 * PAGE, Linux.MADV_POPULATE_WRITE);
                assertThat(m.residency(0, 4 * PAGE, PAGE)).containsExactly(0, 1, 1, 0);
                m.advise(PAGE, PAGE, Linux.MADV_REMOVE);
                assertThat(m.residency(0, 4 * PAGE, PAGE)).containsExactly(0, 0, 1, 0);
                m.protect(0, 4 * PAGE, Linux.PROT_READ);
                assertThat(m.segment().get(ValueLayout.JAVA_BYTE, 0)).isZero();
                assertThatThrownBy(() -> m.advise(1, PAGE, Linux.MADV_DONTNEED))
                        .isInstanceOfSatisfying(
                                SyscallException.class,
                                e -> assertThat(e.errno()).contains(Errno.EINVAL));
                assertThatThrownBy(() -> m.protect(0, 8 * PAGE, Linux.PROT_READ))
                        .isInstanceOf(IndexOutOfBoundsException.class);
            }
        }
    }

    @Test
    void mmapFailureNamesItsArguments() {
        assertThatThrownBy(() -> Mapping.map(null, 0, 0, Linux.PROT_READ, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS))
                .isInstanceOfSatisfying(SyscallException.class, e -> {
                    assertThat(e.errno()).contains(Errno.EINVAL);
                    assertThat(e.getMessage()).startsWith("mmap(anonymous, off=0, len=0");
                });
    }
}
