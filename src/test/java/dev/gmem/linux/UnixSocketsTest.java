package dev.gmem.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.testing.Leaks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class UnixSocketsTest {
    private static final long PAGE = Posix.pageSize();

    @Test
    void layoutsMatchTheKernel() {
        assertThat(UnixSockets.MSGHDR.byteSize()).isEqualTo(56);
        assertThat(UnixSockets.IOVEC.byteSize()).isEqualTo(16);
        assertThat(UnixSockets.CMSGHDR.byteSize()).isEqualTo(16);
        assertThat(UnixSockets.UCRED.byteSize()).isEqualTo(12);
    }

    /** A memfd sent with SCM_RIGHTS arrives as a new descriptor for the same file. */
    @Test
    void descriptorsTravelWithMessages() throws Exception {
        Leaks.Fds fdsBefore = Leaks.fds();
        Fd[] pair = UnixSockets.pair(Linux.SOCK_SEQPACKET);
        try (Fd a = pair[0];
                Fd b = pair[1];
                Fd memfd = Fd.memfd("gmem-scm", Linux.MFD_CLOEXEC);
                Fd efd = Fd.eventfd(0, Linux.EFD_CLOEXEC);
                Arena arena = Arena.ofConfined()) {
            memfd.truncate(PAGE);
            try (Mapping m = Mapping.shared(memfd, PAGE)) {
                m.segment().set(ValueLayout.JAVA_LONG, 0, 0xfeedL);
            }
            byte[] text = "[{\"size\":4096}]".getBytes(StandardCharsets.UTF_8);
            MemorySegment out = arena.allocate(text.length);
            MemorySegment.copy(text, 0, out, ValueLayout.JAVA_BYTE, 0, text.length);
            assertThat(UnixSockets.send(a, out, List.of(memfd, efd))).isEqualTo(text.length);

            MemorySegment in = arena.allocate(256);
            UnixSockets.Received r = UnixSockets.receive(b, in, 4);
            assertThat(r.bytes()).isEqualTo(text.length);
            assertThat(in.asSlice(0, r.bytes()).toArray(ValueLayout.JAVA_BYTE)).isEqualTo(text);
            assertThat(r.fds()).hasSize(2);
            assertThat(r.truncatedControl()).isFalse();
            try (Fd got = r.fds().get(0);
                    Fd got2 = r.fds().get(1);
                    Mapping m = Mapping.shared(got, PAGE)) {
                assertThat(got.number()).isNotEqualTo(memfd.number());
                assertThat(m.segment().get(ValueLayout.JAVA_LONG, 0)).isEqualTo(0xfeedL);
                assertThat(got.fcntl(Linux.F_GETFD, 0) & Linux.FD_CLOEXEC)
                        .as("received descriptors are close-on-exec")
                        .isEqualTo(Linux.FD_CLOEXEC);
                assertThat(got2.isOpen()).isTrue();
            }
            assertThat(UnixSockets.peerCredentials(a).pid())
                    .isEqualTo(ProcessHandle.current().pid());
        }
        assertThat(fdsBefore.opened()).isEmpty();
    }

    @Test
    void listenConnectAcceptByPath(@TempDir Path dir) throws Exception {
        Path path = dir.resolve("gmem.sock");
        try (Fd listener = UnixSockets.listen(path, 4);
                Arena arena = Arena.ofConfined()) {
            CompletableFuture<Fd> accepted = CompletableFuture.supplyAsync(() -> {
                try {
                    return UnixSockets.accept(listener);
                } catch (SyscallException e) {
                    throw new RuntimeException(e);
                }
            });
            Fd client = UnixSockets.connect(path); // closed in the middle, on purpose: the peer then reads end of file
            try (client;
                    Fd server = accepted.get()) {
                UnixSockets.PeerCredentials cred = UnixSockets.peerCredentials(server);
                assertThat(cred.pid()).isEqualTo(ProcessHandle.current().pid());
                MemorySegment msg = arena.allocateFrom("ping");
                UnixSockets.send(client, msg.asSlice(0, 4), List.of());
                MemorySegment in = arena.allocate(16);
                UnixSockets.Received r = UnixSockets.receive(server, in, 0);
                assertThat(r.bytes()).isEqualTo(4);
                assertThat(r.fds()).isEmpty();
                client.close();
                assertThat(UnixSockets.receive(server, in, 0).bytes())
                        .as("peer closed")
                        .isZero();
            }
        }
        assertThatThrownBy(() -> UnixSockets.connect(dir.resolve("absent.sock")))
                .isInstanceOfSatisfying(
                        SyscallException.class, e -> assertThat(e.errno()).contains(Errno.ENOENT));
        assertThatThrownBy(() -> UnixSockets.listen(Path.of("/" + "x".repeat(120)), 1))
                .isInstanceOf(IllegalArgumentException.class);
    }
}
