package dev.gmem.qemu;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.SyscallException;
import dev.gmem.linux.UnixSockets;
import dev.gmem.util.JsonLine;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.List;
import java.util.Map;
import java.util.function.Predicate;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;

/**
 * A client of QEMU's machine protocol (QMP): newline-delimited JSON over a Unix socket. Each
 * command carries an id and waits for the reply with that id; events that arrive meanwhile are
 * kept in arrival order for {@link #awaitEvent}. Every wait has a deadline. A descriptor can ride
 * along with a command (SCM_RIGHTS), as {@code getfd} needs. One thread at a time: the methods are
 * synchronized.
 *
 * <p>Messages are read and written with Jackson's streaming parser and generator into Jackson's
 * tree nodes, without an {@code ObjectMapper}: a mapper's first use costs tens of milliseconds of
 * class loading, and a restore's first QMP message is on its critical path.
 */
public final class Qmp implements AutoCloseable {
    /** How long a command may take unless a caller says otherwise. */
    public static final Duration DEFAULT_TIMEOUT = Duration.ofSeconds(10);

    /** The longest line gmem accepts from QEMU. */
    private static final int MAX_LINE = 16 << 20;

    /** QEMU's version, from the greeting. */
    public record Version(int major, int minor, int micro, String pkg) {
        /** "7.2.22". */
        public String number() {
            return major + "." + minor + "." + micro;
        }

        @Override
        public String toString() {
            return number() + (pkg == null || pkg.isEmpty() ? "" : " (" + pkg + ")");
        }
    }

    private final Path path;
    private final Fd socket;
    private final Poller poller;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment buffer = arena.allocate(64 << 10);
    private final ByteArrayOutputStream line = new ByteArrayOutputStream();
    private byte[] pending = new byte[0];
    private int pendingAt;
    private final ArrayDeque<JsonNode> events = new ArrayDeque<>();
    private Version version;
    private int peerPid;
    private long nextId = 1;
    /** How long a command may take unless its caller says otherwise: the connection's time-out. */
    private final Duration timeout;

    private Qmp(Path path, Fd socket, Duration timeout) throws IOException {
        this.path = path;
        this.socket = socket;
        this.timeout = timeout;
        this.poller = new Poller(Linux.POLLIN, socket);
    }

    /** Reads QEMU's greeting and leaves capability negotiation. */
    private void handshake() throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        JsonNode greeting;
        String first = readLine(deadline, "its greeting");
        try {
            greeting = parse(first);
        } catch (JacksonException e) {
            greeting = null;
        }
        if (greeting == null || !greeting.has("QMP"))
            throw new QmpException(path + ": not a QMP socket (its first line is '" + shorten(first) + "')");
        JsonNode v = greeting.path("QMP").path("version");
        this.version = new Version(
                v.path("qemu").path("major").asInt(),
                v.path("qemu").path("minor").asInt(),
                v.path("qemu").path("micro").asInt(),
                v.path("package").asString("").strip());
        this.peerPid = UnixSockets.peerCredentials(socket).pid();
        execute("qmp_capabilities", Map.of(), null, Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
    }

    /**
     * Connects to the QMP socket at {@code path}, reads QEMU's greeting and leaves capability
     * negotiation, all within {@code timeout}.
     *
     * @throws QmpException naming the path when nothing listens there or it does not speak QMP
     */
    public static Qmp connect(Path path, Duration timeout) throws IOException {
        Fd fd;
        try {
            fd = UnixSockets.connect(path);
        } catch (SyscallException e) {
            throw new QmpException(
                    "no QMP at " + path + ": " + e.errnoText()
                            + (e.is(Errno.ENOENT) || e.is(Errno.ECONNREFUSED)
                                    ? " (is QEMU running with -qmp unix:" + path + ",server=on,wait=off?)"
                                    : ""),
                    null,
                    e);
        }
        Qmp qmp = new Qmp(path, fd, timeout);
        try {
            qmp.handshake();
            return qmp;
        } catch (IOException | RuntimeException e) {
            qmp.close();
            throw e;
        }
    }

    /**
     * Connects to the QMP socket of a QEMU that is starting: retries while the socket does not
     * exist yet or refuses, as long as {@code qemu} lives and {@code timeout} has not passed.
     */
    public static Qmp connectWhenReady(Path path, Duration timeout, Process qemu) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            try {
                return connect(path, Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
            } catch (QmpException e) {
                boolean notYet =
                        e.getCause() instanceof SyscallException s && (s.is(Errno.ENOENT) || s.is(Errno.ECONNREFUSED));
                if (!notYet || !qemu.isAlive() || System.nanoTime() > deadline) {
                    if (!qemu.isAlive())
                        throw new QmpException("QEMU exited before its QMP socket " + path + " was up");
                    throw e;
                }
            }
            try {
                Thread.sleep(2);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new QmpException("interrupted while waiting for QEMU's QMP socket " + path);
            }
        }
    }

    /** QEMU's version, from its greeting. */
    public Version version() {
        return version;
    }

    /** The process id of QEMU, the socket's peer. */
    public int pid() {
        return peerPid;
    }

    public Path path() {
        return path;
    }

    /** Runs {@code command} with {@code arguments} (may be empty), waiting as long as the connection's time-out. */
    public JsonNode execute(String command, Map<String, ?> arguments) throws IOException {
        return execute(command, arguments, null, timeout);
    }

    /** The connection's time-out, which each command may take. */
    public Duration timeout() {
        return timeout;
    }

    /**
     * Runs {@code command} with {@code arguments}, {@code fd} (may be null) passed along with it,
     * and returns its {@code return} value.
     *
     * @throws QmpException with QEMU's error class and description when QEMU refuses it
     */
    public synchronized JsonNode execute(String command, Map<String, ?> arguments, Fd fd, Duration timeout)
            throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        long id = nextId++;
        send(command(command, arguments, id), fd);
        while (true) {
            JsonNode reply = readMessage(deadline, "the reply to '" + command + "'");
            if (reply.has("event")) {
                events.add(reply);
                continue;
            }
            if (reply.path("id").asLong(-1) != id) continue; // the late reply to a command that timed out
            if (reply.has("error")) {
                JsonNode error = reply.get("error");
                throw new QmpException(
                        "QEMU refused '" + command + "': " + error.path("desc").asString("?"),
                        error.path("class").asString(null),
                        null);
            }
            return reply.path("return");
        }
    }

    /** The next event called {@code name} whose data passes {@code test}, waiting up to {@code timeout}. */
    public synchronized JsonNode awaitEvent(String name, Predicate<JsonNode> test, Duration timeout)
            throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            while (!events.isEmpty()) {
                JsonNode e = events.poll();
                if (e.path("event").asString("").equals(name) && test.test(e.path("data"))) return e;
            }
            JsonNode m = readMessage(deadline, "event " + name);
            if (m.has("event")) events.add(m);
        }
    }

    /** The events received so far and not yet taken, removed. */
    public synchronized List<JsonNode> takeEvents() {
        List<JsonNode> out = List.copyOf(events);
        events.clear();
        return out;
    }

    private void send(byte[] bytes, Fd fd) throws IOException {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment data = a.allocate(bytes.length);
            MemorySegment.copy(bytes, 0, data, ValueLayout.JAVA_BYTE, 0, bytes.length);
            long at = 0;
            while (at < bytes.length) {
                at += UnixSockets.send(socket, data.asSlice(at), at == 0 && fd != null ? List.of(fd) : List.of());
            }
        } catch (SyscallException e) {
            throw new QmpException("QMP connection " + path + ": " + e.getMessage() + " (did QEMU exit?)", null, e);
        }
    }

    private JsonNode readMessage(long deadline, String what) throws IOException {
        String text = readLine(deadline, what);
        while (text.isEmpty()) text = readLine(deadline, what); // QEMU sends none, but an empty line is no message
        try {
            return parse(text);
        } catch (JacksonException e) {
            throw new QmpException(path + ": QEMU sent a line that is not JSON: '" + shorten(text) + "'", null, e);
        }
    }

    private String readLine(long deadline, String what) throws IOException {
        line.reset();
        while (true) {
            while (pendingAt < pending.length) {
                byte b = pending[pendingAt++];
                if (b == '\n') return line.toString(StandardCharsets.UTF_8).strip();
                line.write(b);
                if (line.size() > MAX_LINE)
                    throw new QmpException(path + ": a line from QEMU is longer than " + MAX_LINE + " bytes");
            }
            long left = deadline - System.nanoTime();
            if (left <= 0)
                throw new QmpException("QEMU did not send " + what + " within the time limit (QMP " + path + ")");
            if (poller.poll((int) Math.max(1, Math.min(Integer.MAX_VALUE, left / 1_000_000))) == 0) continue;
            long n;
            try {
                n = socket.read(buffer);
            } catch (SyscallException e) {
                throw new QmpException(
                        "the QMP connection " + path + " failed while gmem waited for " + what + ": " + e.errnoText()
                                + " (did QEMU exit?)",
                        null,
                        e);
            }
            if (n == 0)
                throw new QmpException("QEMU closed the QMP connection " + path + " while gmem waited for " + what
                        + " (did it exit?)");
            pending = buffer.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE);
            pendingAt = 0;
        }
    }

    /** {@code {"execute": command, "arguments": arguments, "id": id}} and a newline, in UTF-8. */
    static byte[] command(String command, Map<String, ?> arguments, long id) {
        Map<String, Object> c = new java.util.LinkedHashMap<>();
        c.put("execute", command);
        if (!arguments.isEmpty()) c.put("arguments", arguments);
        c.put("id", id);
        return (JsonLine.write(c) + "\n").getBytes(StandardCharsets.UTF_8);
    }

    /** One JSON value, the whole of {@code text}, as Jackson's tree nodes. */
    static JsonNode parse(String text) {
        return JsonLine.parse(text);
    }

    private static String shorten(String s) {
        return s.length() > 120 ? s.substring(0, 120) + "…" : s;
    }

    @Override
    public synchronized void close() {
        socket.closeQuietly();
        arena.close();
    }
}
