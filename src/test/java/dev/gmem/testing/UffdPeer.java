package dev.gmem.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.UnixSockets;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

/**
 * The test peer that plays a VMM ({@code src/test/resources/peer/uffd_peer.c}): a separate process
 * that registers its own anonymous memory with userfaultfd and sends the descriptor and its regions
 * over a Unix socket, then reads its memory (faults served by the test) and writes it to stdout.
 * Built once per test JVM with cc; tests that need it are skipped with the reason where it cannot be.
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
        try {
            Path dir = Files.createTempDirectory("gmem-uffd-peer");
            Path source = dir.resolve("uffd_peer.c");
            try (InputStream in = UffdPeer.class.getResourceAsStream("/peer/uffd_peer.c")) {
                if (in == null) throw new IOException("the test resources have no /peer/uffd_peer.c");
                Files.copy(in, source);
            }
            Path out = dir.resolve("uffd_peer");
            Process cc = new ProcessBuilder("cc", "-O2", "-pthread", "-o", out.toString(), source.toString())
                    .redirectErrorStream(true)
                    .start();
            String text = new String(cc.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!cc.waitFor(60, TimeUnit.SECONDS) || cc.exitValue() != 0) {
                cc.destroyForcibly();
                whyNot = "cc failed: " + text.strip();
                return;
            }
            out.toFile().deleteOnExit();
            source.toFile().deleteOnExit();
            dir.toFile().deleteOnExit();
            binary = out;
        } catch (IOException e) {
            whyNot = "no C compiler (" + e.getMessage() + "); install gcc";
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            whyNot = "interrupted while building";
        }
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
