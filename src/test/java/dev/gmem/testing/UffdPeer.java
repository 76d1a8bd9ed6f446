package dev.gmem.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.UnixSockets;
import java.io.IOException;
import java.nio.file.Path;

/**
 * The test peer that plays a VMM ({@code src/main/resources/bench/uffd_peer.c}, which the benchmark uses too): a separate process
 * that registers its own anonymous memory with userfaultfd and sends the descriptor and its regions
 * over a Unix socket, then reads its memory (faults served by the test) and writes it to stdout.
 * Built once per test JVM with cc ({@link dev.gmem.bench.CProgram}); tests that need it are skipped with the reason where it cannot be.
 */
public final class UffdPeer {
    private static Path binary;
    private static String whyNot;

    private UffdPeer() {}

    /** The peer's binary, built on first use; skips the test with the reason when there is no C compiler. */
    public static synchronized Path binary() {
        if (binary == null && whyNot == null) build();
        assumeTrue(binary != null, () -> "needs the C test peer: " + whyNot);
        return binary;
    }

    private static void build() {
        java.util.List<String> why = new java.util.ArrayList<>();
        binary = dev.gmem.bench.CProgram.build("uffd_peer", java.util.List.of("-pthread"), why)
                .orElse(null);
        if (binary == null) whyNot = String.join("; ", why);
    }

    /**
     * Accepts the peer's connection on {@code listener} and receives its handshake as a handler
     * does ({@link dev.gmem.fc.Handshake#receive}), checked against a source of {@code sourceSize}
     * bytes; fails after {@code timeoutMillis}.
     */
    public static dev.gmem.fc.Handshake receive(Fd listener, long timeoutMillis, long sourceSize) throws IOException {
        if (new Poller(Linux.POLLIN, listener).poll((int) timeoutMillis) == 0)
            throw new IOException("the peer did not connect in " + timeoutMillis + " ms");
        try (Fd conn = UnixSockets.accept(listener)) {
            return dev.gmem.fc.Handshake.receive(conn, java.time.Duration.ofMillis(timeoutMillis), sourceSize);
        }
    }

    /**
     * Starts the peer as a VM whose memory is served over {@code socket}: regions {@code sizes}
     * ({@code 5242880,3145728}), {@code threads} threads touching them, its stderr to {@code err}.
     * It pauses after writing its memory to stdout until a byte arrives on its stdin, so that a
     * test can act while it is still alive (graduate it, say). The caller reaps it.
     */
    public static Process startPaused(Path socket, String sizes, int threads, Path err) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(binary().toString(), socket.toString(), sizes, Integer.toString(threads))
                .redirectError(err.toFile());
        pb.environment().put("UFFD_PEER_PAUSE", "1");
        return pb.start();
    }

    /** Lets a paused peer go on to its end. */
    public static void proceed(Process peer) throws IOException {
        peer.getOutputStream().write('g');
        peer.getOutputStream().flush();
    }
}
