package dev.gmem.fc;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.SyscallException;
import dev.gmem.linux.UnixSockets;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.Function;

/**
 * The handler's control socket, beside its listening socket ({@code PATH.ctl}, mode 0600): a client
 * connects, sends one request line ({@code stats}), and reads one reply until the handler closes
 * the connection. One thread, {@code gmem-fc-control}, answers the clients in turn; a client that
 * sends nothing is dropped after {@link #REQUEST_TIMEOUT}. {@link #ask} is the client side.
 */
public final class ControlSocket implements AutoCloseable {
    /** How long a client has to send its request, and {@link #ask} to get its reply. */
    public static final Duration REQUEST_TIMEOUT = Duration.ofSeconds(5);

    private static final int MAX_REQUEST = 256;

    /**
     * A reply: its text, the descriptors sent with it (SCM_RIGHTS; still the answerer's), and what
     * to do once it has been sent (or null).
     */
    public record Reply(String text, List<Fd> fds, Runnable after, boolean closeFds) {
        public Reply(String text, List<Fd> fds, Runnable after) {
            this(text, fds, after, false);
        }

        public static Reply of(String text) {
            return new Reply(text, List.of(), null);
        }

        /** A reply that hands over {@code fd}, the reply's own: closed here once sent, or once the sending failed. */
        public static Reply handing(String text, Fd fd) {
            return new Reply(text, List.of(fd), null, true);
        }
    }

    /** What a handler answered: its text, and the descriptors that came with it (the caller's to close). */
    public record Answer(String text, List<Fd> fds) {}

    /**
     * A request: its line, and the descriptors the client sent with it (SCM_RIGHTS), which the
     * answer owns: it keeps or closes each.
     */
    public record Request(String line, List<Fd> fds) {}

    /** The most descriptors a request may carry. */
    public static final int MAX_REQUEST_FDS = 4;

    private final Path path;
    private final Fd listener;
    private final Fd stop;
    private final Function<Request, Reply> answer;
    private final Consumer<String> log;
    private final Thread thread;
    private volatile boolean stopping;

    private ControlSocket(Path path, Fd listener, Fd stop, Function<Request, Reply> answer, Consumer<String> log) {
        this.path = path;
        this.listener = listener;
        this.stop = stop;
        this.answer = answer;
        this.log = log;
        this.thread = Thread.ofPlatform().name("gmem-fc-control").daemon().start(this::serve);
    }

    /** The control socket of a handler listening on {@code socket}. */
    public static Path beside(Path socket) {
        return socket.resolveSibling(socket.getFileName() + ".ctl");
    }

    /**
     * Listens on {@code path} (a stale socket there is replaced, a live one refused) and answers
     * each request line with {@code answer} (its reply, or an error line for a request it does not know).
     */
    public static ControlSocket start(Path path, Function<String, Reply> answer, Consumer<String> log)
            throws IOException {
        return startTakingDescriptors(
                path,
                r -> {
                    for (Fd fd : r.fds()) fd.closeQuietly(); // these requests carry none
                    return answer.apply(r.line());
                },
                log);
    }

    /** As {@link #start}, for requests that may carry descriptors (up to {@link #MAX_REQUEST_FDS}). */
    public static ControlSocket startTakingDescriptors(Path path, Function<Request, Reply> answer, Consumer<String> log)
            throws IOException {
        FcHandler.clearStale(path);
        Fd listener = UnixSockets.listen(path, 8);
        try {
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
            return new ControlSocket(path, listener, Fd.eventfd(0, Linux.EFD_CLOEXEC), answer, log);
        } catch (IOException | RuntimeException e) {
            listener.closeQuietly();
            Files.deleteIfExists(path);
            throw e;
        }
    }

    public Path path() {
        return path;
    }

    private void serve() {
        Poller poller = new Poller(Linux.POLLIN, listener, stop);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(MAX_REQUEST);
            while (!stopping) {
                try {
                    if (poller.poll(-1) <= 0 || stopping || (poller.ready(0) & Linux.POLLIN) == 0) continue;
                } catch (SyscallException e) {
                    log.accept("control socket: stopped answering: " + e.getMessage());
                    return;
                }
                Runnable after = null;
                try (Fd conn = UnixSockets.accept(listener)) {
                    Request request = readRequest(conn, buffer);
                    if (request == null) continue;
                    Reply reply = answer.apply(request);
                    try {
                        sendWithin(conn, (reply.text() + "\n").getBytes(StandardCharsets.UTF_8), reply.fds());
                    } finally {
                        if (reply.closeFds()) for (Fd fd : reply.fds()) fd.closeQuietly();
                    }
                    after = reply.after();
                } catch (IOException | RuntimeException e) {
                    if (!stopping) log.accept("control socket: " + e.getMessage());
                }
                if (after != null) after.run(); // the client has its reply, the connection closed
            }
        }
    }

    /**
     * Sends {@code reply} without blocking this thread past {@link #REQUEST_TIMEOUT}: a client that
     * stops reading a long reply is dropped rather than stalling the answers to the others.
     */
    private static void sendWithin(Fd conn, byte[] reply, List<Fd> fds) throws IOException {
        conn.fcntl(Linux.F_SETFL, conn.fcntl(Linux.F_GETFL, 0) | Linux.O_NONBLOCK);
        long deadline = System.nanoTime() + REQUEST_TIMEOUT.toNanos();
        try (Arena once = Arena.ofConfined()) { // freed with each reply: a daemon answers for days
            MemorySegment out = once.allocate(reply.length);
            out.copyFrom(MemorySegment.ofArray(reply));
            long at = 0;
            while (at < reply.length) {
                try {
                    at += UnixSockets.send(conn, out.asSlice(at), at == 0 ? fds : List.of());
                } catch (SyscallException e) {
                    if (!e.is(dev.gmem.linux.Errno.EAGAIN)) throw e;
                    long left = (deadline - System.nanoTime()) / 1_000_000;
                    if (left <= 0 || new Poller(Linux.POLLOUT, conn).poll((int) left) == 0)
                        throw new IOException(
                                "a client did not read its reply in " + REQUEST_TIMEOUT.toSeconds() + " s");
                }
            }
        }
    }

    /** The client's request, or null when it sent none in time (the descriptors it sent are then closed). */
    private static Request readRequest(Fd conn, MemorySegment buffer) throws IOException {
        List<Fd> fds = new java.util.ArrayList<>();
        try {
            String line = readLine(conn, buffer, fds);
            if (line != null) return new Request(line, fds);
        } catch (IOException | RuntimeException e) {
            for (Fd fd : fds) fd.closeQuietly();
            throw e;
        }
        for (Fd fd : fds) fd.closeQuietly();
        return null;
    }

    private static String readLine(Fd conn, MemorySegment buffer, List<Fd> fds) throws IOException {
        StringBuilder line = new StringBuilder();
        long deadline = System.nanoTime() + REQUEST_TIMEOUT.toNanos();
        while (true) {
            long left = (deadline - System.nanoTime()) / 1_000_000;
            if (left <= 0 || new Poller(Linux.POLLIN, conn).poll((int) left) == 0) return null;
            UnixSockets.Received r = UnixSockets.receive(conn, buffer, MAX_REQUEST_FDS);
            fds.addAll(r.fds());
            if (r.bytes() == 0) return line.isEmpty() ? null : line.toString().strip();
            line.append(
                    new String(buffer.asSlice(0, r.bytes()).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
            int nl = line.indexOf("\n");
            if (nl >= 0) return line.substring(0, nl).strip();
            if (line.length() > MAX_REQUEST) return null;
        }
    }

    /**
     * Sends {@code request} to the handler whose control socket is {@code path} and returns its
     * reply (without the final newline).
     *
     * @throws IOException naming the path when no handler answers there
     */
    public static String ask(Path path, String request) throws IOException {
        Answer a = askForDescriptors(path, request, List.of(), "gmem fc-handler");
        for (Fd fd : a.fds()) fd.closeQuietly();
        return a.text();
    }

    /**
     * As {@link #ask}, sending {@code send} with the request (they stay the caller's) and keeping
     * the descriptors that come with the reply; {@code who} names the answerer in errors.
     */
    public static Answer askForDescriptors(Path path, String request, List<Fd> send, String who) throws IOException {
        List<Fd> fds = new java.util.ArrayList<>();
        try {
            return new Answer(exchange(path, request, send, who, fds), fds);
        } catch (IOException | RuntimeException e) {
            for (Fd fd : fds) fd.closeQuietly();
            throw e;
        }
    }

    private static String exchange(Path path, String request, List<Fd> send, String who, List<Fd> fds)
            throws IOException {
        Fd conn;
        try {
            conn = UnixSockets.connect(path);
        } catch (SyscallException e) {
            throw new IOException("no " + who + " answers at " + path + " (" + e.errnoText() + ")");
        }
        try (conn;
                Arena arena = Arena.ofConfined()) {
            byte[] req = (request + "\n").getBytes(StandardCharsets.UTF_8);
            MemorySegment out = arena.allocate(req.length);
            out.copyFrom(MemorySegment.ofArray(req));
            UnixSockets.send(conn, out, send);
            MemorySegment buffer = arena.allocate(64 << 10);
            java.io.ByteArrayOutputStream reply = new java.io.ByteArrayOutputStream();
            long deadline = System.nanoTime() + REQUEST_TIMEOUT.toNanos();
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0 || new Poller(Linux.POLLIN, conn).poll((int) left) == 0)
                    throw new IOException(
                            "the " + who + " at " + path + " did not answer in " + REQUEST_TIMEOUT.toSeconds() + " s");
                UnixSockets.Received r = UnixSockets.receive(conn, buffer, 4);
                fds.addAll(r.fds());
                if (r.bytes() == 0) break;
                reply.write(buffer.asSlice(0, r.bytes()).toArray(ValueLayout.JAVA_BYTE));
                if (reply.size() > 16 << 20) throw new IOException("the reply from " + path + " is too long");
            }
            return reply.toString(StandardCharsets.UTF_8).stripTrailing();
        }
    }

    /** Stops answering and removes the socket. */
    @Override
    public void close() {
        stopping = true;
        try {
            stop.eventfdAdd(1);
        } catch (SyscallException ignored) {
            // the thread also sees stopping on its next wake-up
        }
        try {
            thread.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        listener.closeQuietly();
        stop.closeQuietly();
        try {
            Files.deleteIfExists(path);
        } catch (IOException e) {
            log.accept("cannot remove " + path + ": " + e.getMessage());
        }
    }
}
