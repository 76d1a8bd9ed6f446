package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.fault.ForeignRegion;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.UnixSockets;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import dev.gmem.testing.UffdPeer;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The Firecracker handshake: what a VMM sends, received from a real peer process, and every malformed message refused by name. */
class HandshakeTest {
    static final long FILE = 4L << 30;

    @TempDir
    Path dir;

    @Test
    void firecrackersOwnExampleParses() throws Exception {
        // the two-region example of the protocol: 3 GiB and 1 GiB, end to end in the memory file
        String json =
                "[{\"base_host_virt_addr\":140234567680000,\"size\":3221225472,\"offset\":0,\"page_size\":4096,\"page_size_kib\":4096},"
                        + "{\"base_host_virt_addr\":140238862647296,\"size\":1073741824,\"offset\":3221225472,\"page_size\":4096,\"page_size_kib\":4096}]";
        assertThat(Handshake.parse(json, FILE))
                .containsExactly(
                        new ForeignRegion(140234567680000L, 3L << 30, 0, 4096),
                        new ForeignRegion(140238862647296L, 1L << 30, 3L << 30, 4096));
        // an address above 2^63 is a valid u64
        assertThat(Handshake.parse(
                                "[{\"base_host_virt_addr\":9223372036854775808,\"size\":4096,\"offset\":0,\"page_size\":4096}]",
                                FILE)
                        .get(0)
                        .hostAddress())
                .isEqualTo(Long.MIN_VALUE);
    }

    @Test
    void theSecretHidingBranchsFieldsAndFollowUpTextAreReadPast() throws Exception {
        String region = "{\"base_host_virt_addr\":4096,\"size\":8192,\"offset\":0,\"page_size\":4096,"
                + "\"page_size_kib\":4096,\"gpa_start\":0,\"is_guest_memfd\":false}";
        List<ForeignRegion> want = List.of(new ForeignRegion(4096, 8192, 0, 4096));
        assertThat(Handshake.parse("[" + region + "]", FILE)).isEqualTo(want);
        // the text it sends next, on the same stream, read with the array
        assertThat(Handshake.parse("[" + region + "]" + Handshake.NO_EXITLESS_APF, FILE))
                .isEqualTo(want);
        assertThatThrownBy(() -> Handshake.parse("[" + region + "]exitless_apf:2", FILE))
                .isInstanceOf(HandshakeException.class)
                .hasMessageContaining("exitless async page faults (exitless_apf:2)");
        assertThatThrownBy(() -> Handshake.parse("[" + region + "]hello", FILE))
                .isInstanceOf(HandshakeException.class)
                .hasMessageContaining("unexpected text after the regions: 'hello'");
    }

    @ParameterizedTest(name = "{1}")
    @CsvSource(
            delimiter = '|',
            value = {
                "not json | the message is not JSON",
                "{\"a\":1} | not a JSON array of regions",
                "[] | lists no region",
                "[7] | region 0 is not an object",
                "[{\"size\":4096,\"offset\":0,\"page_size\":4096}] | region 0: no base_host_virt_addr",
                "[{\"base_host_virt_addr\":4096,\"size\":\"4096\",\"offset\":0,\"page_size\":4096}] | region 0: size is not an unsigned 64-bit integer",
                "[{\"base_host_virt_addr\":-4096,\"size\":4096,\"offset\":0,\"page_size\":4096}] | region 0: base_host_virt_addr is not an unsigned 64-bit integer",
                "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":8192}] | page_size 8192 is neither 4096 nor 2097152",
                "[{\"base_host_virt_addr\":4097,\"size\":4096,\"offset\":0,\"page_size\":4096}] | must be multiples of page_size 4096",
                "[{\"base_host_virt_addr\":4096,\"size\":0,\"offset\":0,\"page_size\":4096}] | region 0: size is 0",
                "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":8192,\"page_size\":4096}] | offset 8192 is not 0",
                "[{\"base_host_virt_addr\":4096,\"size\":8589934592,\"offset\":0,\"page_size\":4096}] | past the end of the memory file",
                "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,\"page_size_kib\":4}] | page_size_kib 4 differs",
                "[{\"base_host_virt_addr\":8192,\"size\":8192,\"offset\":0,\"page_size\":4096},{\"base_host_virt_addr\":12288,\"size\":4096,\"offset\":8192,\"page_size\":4096}] | overlap",
                "[{\"base_host_virt_addr\":18446744073709547520,\"size\":8192,\"offset\":0,\"page_size\":4096}] | overflows"
            })
    void aMalformedMessageIsRefusedByName(String json, String says) {
        assertThatThrownBy(() -> Handshake.parse(json, FILE))
                .isInstanceOf(HandshakeException.class)
                .hasMessageContaining(says);
    }

    @Test
    void tooManyRegionsAreRefused() {
        StringBuilder b = new StringBuilder("[");
        for (int i = 0; i <= Handshake.MAX_REGIONS; i++) {
            if (i > 0) b.append(',');
            b.append("{\"base_host_virt_addr\":")
                    .append((i + 1L) << 20)
                    .append(",\"size\":4096,\"offset\":")
                    .append(i * 4096L)
                    .append(",\"page_size\":4096}");
        }
        assertThatThrownBy(() -> Handshake.parse(b.append(']').toString(), FILE))
                .hasMessageContaining("more than " + Handshake.MAX_REGIONS);
    }

    /** A real VMM-like process registers its memory, connects and sends; the handshake arrives whole, with its userfaultfd. */
    @Test
    void aPeerProcessHandshakeIsReceived() throws Exception {
        Host.assumeUserfaultfd();
        Path peer = UffdPeer.binary();
        Path socket = dir.resolve("fc.sock");
        Leaks.Fds fds = Leaks.fds();
        try (Fd listener = UnixSockets.listen(socket, 1)) {
            Process child = new ProcessBuilder(peer.toString(), socket.toString(), (2L << 20) + "," + (1L << 20), "1")
                    .redirectError(dir.resolve("peer.err").toFile())
                    .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                    .start();
            try {
                assertThat(new dev.gmem.linux.Poller(Linux.POLLIN, listener).poll(10_000))
                        .as("the peer connects")
                        .isPositive();
                try (Fd conn = UnixSockets.accept(listener);
                        Handshake h = Handshake.receive(conn, Duration.ofSeconds(10), 3L << 20)) {
                    assertThat(h.regions()).hasSize(2);
                    assertThat(h.regions().get(0).length()).isEqualTo(2L << 20);
                    assertThat(h.regions().get(1).sourceOffset()).isEqualTo(2L << 20);
                    assertThat(UnixSockets.peerCredentials(conn).pid()).isEqualTo(child.pid());
                }
            } finally {
                child.destroyForcibly();
                assertThat(child.waitFor(10, TimeUnit.SECONDS)).isTrue();
            }
        }
        assertThat(fds.opened())
                .as("the descriptor is closed with the handshake")
                .isEmpty();
    }

    @Test
    void aWrongDescriptorNoneOrSilenceIsRefusedAndNothingLeaks() throws Exception {
        Leaks.Fds fds = Leaks.fds();
        String json = "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096}]";
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment msg = arena.allocateFrom(json);
            MemorySegment payload = msg.asSlice(0, json.length());
            // a memfd is no userfaultfd
            Fd[] pair = UnixSockets.pair(Linux.SOCK_STREAM);
            try (Fd a = pair[0];
                    Fd b = pair[1];
                    Fd memfd = Fd.memfd("gmem-test-not-uffd", 0)) {
                UnixSockets.send(a, payload, List.of(memfd));
                assertThatThrownBy(() -> Handshake.receive(b, Duration.ofSeconds(5), FILE))
                        .hasMessageContaining("not a userfaultfd");
            }
            // two descriptors
            pair = UnixSockets.pair(Linux.SOCK_STREAM);
            try (Fd a = pair[0];
                    Fd b = pair[1];
                    Fd m1 = Fd.memfd("gmem-test-1", 0);
                    Fd m2 = Fd.memfd("gmem-test-2", 0)) {
                UnixSockets.send(a, payload, List.of(m1, m2));
                assertThatThrownBy(() -> Handshake.receive(b, Duration.ofSeconds(5), FILE))
                        .hasMessageContaining("2 descriptors, not one");
            }
            // the secret-hiding branch's guest_memfd handshake: the userfaultfd, the guest_memfd and a bitmap memfd
            pair = UnixSockets.pair(Linux.SOCK_STREAM);
            String gmemJson =
                    "[{\"base_host_virt_addr\":4096,\"size\":4096,\"offset\":0,\"page_size\":4096,\"gpa_start\":0,"
                            + "\"is_guest_memfd\":true}]";
            try (Fd a = pair[0];
                    Fd b = pair[1];
                    Fd m1 = Fd.memfd("gmem-test-1", 0);
                    Fd m2 = Fd.memfd("gmem-test-2", 0);
                    Fd m3 = Fd.memfd("gmem-test-3", 0)) {
                UnixSockets.send(a, arena.allocateFrom(gmemJson).asSlice(0, gmemJson.length()), List.of(m1, m2, m3));
                assertThatThrownBy(() -> Handshake.receive(b, Duration.ofSeconds(5), FILE))
                        .hasMessageContaining("the regions are guest_memfd (is_guest_memfd");
            }
            // JSON and then a close, without a descriptor
            pair = UnixSockets.pair(Linux.SOCK_STREAM);
            Fd sender = pair[0];
            try (Fd b = pair[1]) {
                UnixSockets.send(sender, payload, List.of());
                sender.closeQuietly(); // early, on purpose: the handler then reads end of file
                assertThatThrownBy(() -> Handshake.receive(b, Duration.ofSeconds(5), FILE))
                        .hasMessageContaining("closed the connection before");
            }
            // nothing at all: timed out
            pair = UnixSockets.pair(Linux.SOCK_STREAM);
            try (Fd silent = pair[0];
                    Fd b = pair[1]) {
                assertThat(silent.number())
                        .as("a peer that stays connected and says nothing")
                        .isPositive();
                assertThatThrownBy(() -> Handshake.receive(b, Duration.ofMillis(200), FILE))
                        .hasMessageContaining("no descriptor in 200 ms");
            }
        }
        assertThat(fds.opened()).isEmpty();
    }
}
