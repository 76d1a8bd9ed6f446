package dev.gmem.fc;

import dev.gmem.fault.FaultEngine;
import dev.gmem.fault.ForeignRegion;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * {@code gmem fc-handler --state-dir DIR}: what a VM's session needs to be served again by another
 * handler process after this one died (a crash, an OOM kill, a restart of the whole service),
 * kept outside the serving process. Per VM:
 * <ul>
 *   <li>{@code vm-PID-START.json}: its VMM's pid and start time (so a pid taken by another program
 *       is told apart), its uid, the source it was served from, and its regions. Written once, to a
 *       temporary name, then renamed: a crash leaves it whole or absent.
 *   <li>{@code vm-PID-START.removed}: every removal read from its userfaultfd, appended (16 bytes:
 *       start, end) right after the event is read and before any later fault is served. A record
 *       cut short can only be the last, and means a removal whose range is unknown: that VM is dropped.
 *   <li>{@code vm-PID-START.events}: the buffer the VM's events are read into, mapped shared: the
 *       kernel copies them there within the read, so a handler that died before it appended a
 *       removal it had read leaves that removal here (see {@link FaultEngine.Journal#events}). The
 *       removals in it are read back with the log's.
 * </ul>
 * The descriptor itself is not kept here: a handler taking the VM over takes a new copy of the
 * userfaultfd from the still-running VMM ({@code pidfd_getfd}, see {@link Takeover}) or from a
 * {@link Keeper}. A lock on {@code DIR/lock} keeps a second handler off the directory; {@code
 * DIR/alive}, mapped shared, holds the wall-clock millisecond at which the handler holding the lock
 * was last seen alive, written every {@link #BEAT_MILLIS} ms, so that the next one can tell how long
 * after the death of the last its VMs were served again. Nothing is fsynced: the state must survive
 * the handler's death, not the host's.
 */
public final class StateDir implements AutoCloseable {
    private static final JsonMapper JSON = JsonMapper.builder().build();
    private static final int REMOVAL = 16;

    private final Path dir;
    private final String source;
    private final FileChannel lockFile;
    private final FileLock lock;

    /** How often the holder of the directory writes {@code DIR/alive}. */
    public static final long BEAT_MILLIS = 10;

    private final java.nio.MappedByteBuffer alive;
    private final long lastSeenAlive;
    private final Thread beating;
    private volatile boolean closed;

    private StateDir(Path dir, String source, FileChannel lockFile, FileLock lock) throws IOException {
        this.dir = dir;
        this.source = source;
        this.lockFile = lockFile;
        this.lock = lock;
        try (FileChannel a = FileChannel.open(
                dir.resolve("alive"), StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
            this.alive = a.map(FileChannel.MapMode.READ_WRITE, 0, Long.BYTES);
        }
        long last = alive.getLong(0);
        this.lastSeenAlive = last > 0 ? last : -1;
        alive.putLong(0, System.currentTimeMillis());
        this.beating = Thread.ofPlatform().name("gmem-fc-alive").daemon().start(this::beat);
    }

    private void beat() {
        while (!closed) {
            alive.putLong(0, System.currentTimeMillis()); // a store into the page cache: the last outlives this process
            try {
                Thread.sleep(BEAT_MILLIS);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    /**
     * When the handler that held the directory before this one was last seen alive (wall-clock
     * milliseconds, at most {@link #BEAT_MILLIS} before it died or let go), or -1 if none did.
     */
    public long lastSeenAlive() {
        return lastSeenAlive;
    }

    /**
     * Opens (creating, mode 0700) the state directory {@code dir} for a handler serving the source
     * {@code source} (its identity: path, size, modification time).
     *
     * @throws IOException naming the directory when another handler holds it
     */
    public static StateDir open(Path dir, String source) throws IOException {
        Files.createDirectories(dir);
        Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwx------"));
        FileChannel ch = FileChannel.open(dir.resolve("lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
        FileLock l;
        try {
            l = ch.tryLock();
        } catch (java.nio.channels.OverlappingFileLockException e) {
            l = null; // held by this process already
        } catch (IOException | RuntimeException e) {
            ch.close();
            throw e;
        }
        if (l == null) {
            ch.close();
            throw new IOException(dir + ": another gmem fc-handler uses this state directory");
        }
        try {
            return new StateDir(dir, source, ch, l);
        } catch (IOException | RuntimeException e) {
            ch.close(); // the lock goes with it
            throw e;
        }
    }

    /**
     * Records the socket the handler holding the directory listens on ({@code DIR/socket}, one
     * line, renamed into place), so that {@code --stats}, {@code --graduate}, {@code --drain} and
     * {@code --takeover} can find it from the directory alone.
     */
    public void recordSocket(Path socket) throws IOException {
        Path tmp = dir.resolve("socket.tmp");
        Files.writeString(tmp, socket.toAbsolutePath() + "\n", StandardCharsets.UTF_8);
        Files.move(tmp, dir.resolve("socket"), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /**
     * The socket of the handler that holds, or last held, state directory {@code dir}.
     *
     * @throws IOException naming the directory when no handler recorded one there
     */
    public static Path socketIn(Path dir) throws IOException {
        try {
            return Path.of(Files.readString(dir.resolve("socket"), StandardCharsets.UTF_8)
                    .strip());
        } catch (java.nio.file.NoSuchFileException e) {
            throw new IOException(
                    dir + ": no handler has recorded its socket there (no " + dir.resolve("socket") + ")");
        }
    }

    /** The identity a state directory records of a source: its path, size and modification time. */
    public static String identity(Path source) throws IOException {
        return source.toAbsolutePath() + " " + Files.size(source) + " "
                + Files.getLastModifiedTime(source).toMillis();
    }

    public Path path() {
        return dir;
    }

    /**
     * Whether the directory is on tmpfs (such as {@code /run}), where the events buffers' pages are
     * never write-protected by writeback: the one placement where no removal can be lost in the
     * instant of a kill.
     */
    public boolean onTmpfs() {
        try {
            return "tmpfs".equals(Files.getFileStore(dir).type());
        } catch (IOException e) {
            return false;
        }
    }

    /**
     * One VM's state: its record, its removal log open for appending, and its events buffer
     * (mapped when the engine asks for it, and unmapped only once nothing refers to it: an engine
     * closed from another thread may still be reading into it when its session closes this).
     */
    public final class Vm implements FaultEngine.Journal, AutoCloseable {
        private final String key;
        private final FileChannel removals;
        private final java.lang.foreign.Arena mapping = java.lang.foreign.Arena.ofAuto();

        private Vm(String key, FileChannel removals) {
            this.key = key;
            this.removals = removals;
        }

        /**
         * {@code KEY.events}, {@code bytes} long, written out whole before it is mapped (its blocks
         * allocated), and locked in memory where allowed, so that the kernel's copy of an event into
         * it does not fault: a copy that faults while the process is being killed loses the event.
         * On tmpfs nothing write-protects a dirty page; elsewhere writeback may (see {@link #onTmpfs}).
         */
        @Override
        public java.lang.foreign.MemorySegment events(long bytes) throws IOException {
            Path file = dir.resolve(key + ".events");
            try (FileChannel ch = FileChannel.open(
                    file, StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
                if (ch.size() != bytes) {
                    ch.truncate(0);
                    ByteBuffer zeros = ByteBuffer.allocate((int) bytes);
                    while (zeros.hasRemaining()) ch.write(zeros, zeros.position());
                }
                java.lang.foreign.MemorySegment m = ch.map(FileChannel.MapMode.READ_WRITE, 0, bytes, mapping);
                try {
                    dev.gmem.linux.Posix.mlock(m);
                } catch (dev.gmem.linux.SyscallException e) {
                    // over RLIMIT_MEMLOCK: the page is touched before each read all the same
                }
                return m;
            }
        }

        public String key() {
            return key;
        }

        @Override
        public void removed(long start, long end) throws IOException {
            ByteBuffer b = ByteBuffer.allocate(REMOVAL).order(ByteOrder.LITTLE_ENDIAN);
            b.putLong(start).putLong(end).flip();
            while (b.hasRemaining()) removals.write(b);
        }

        @Override
        public void close() {
            try {
                removals.close();
            } catch (IOException ignored) {
                // appended records are in the file already
            }
        }
    }

    /** Records a new VM served from now on: its VMM, identified by pid and start time, and its regions. */
    public Vm record(int pid, long startTime, int uid, List<ForeignRegion> regions) throws IOException {
        String key = "vm-" + pid + "-" + startTime;
        ObjectNode o = JSON.createObjectNode();
        o.put("pid", pid)
                .put("start_time", startTime)
                .put("uid", uid)
                .put("source", source)
                .put("takeovers", 0);
        ArrayNode rs = o.putArray("regions");
        for (ForeignRegion r : regions)
            rs.addArray()
                    .add(r.hostAddress())
                    .add(r.length())
                    .add(r.sourceOffset())
                    .add(r.pageSize());
        Path tmp = dir.resolve(key + ".json.tmp");
        Files.writeString(tmp, JSON.writeValueAsString(o), StandardCharsets.UTF_8);
        // left by a VMM of this pid and start time: none is alive
        Files.deleteIfExists(dir.resolve(key + ".removed"));
        Files.deleteIfExists(dir.resolve(key + ".events"));
        FileChannel log = null;
        try {
            log = FileChannel.open(
                    dir.resolve(key + ".removed"),
                    StandardOpenOption.CREATE_NEW,
                    StandardOpenOption.WRITE,
                    StandardOpenOption.APPEND);
            Files.move(
                    tmp,
                    dir.resolve(key + ".json"),
                    StandardCopyOption.ATOMIC_MOVE,
                    StandardCopyOption.REPLACE_EXISTING);
            return new Vm(key, log);
        } catch (IOException | RuntimeException e) {
            if (log != null) log.close();
            Files.deleteIfExists(tmp);
            Files.deleteIfExists(dir.resolve(key + ".removed"));
            throw e;
        }
    }

    /**
     * A VM recorded by a handler that is gone, as read back: {@code removed} holds the log's
     * removals and those found only in its events buffer ({@code unlogged} of them: read by the
     * handler that died, not yet appended); {@code problem} is non-null when it cannot be served again.
     */
    public record Recorded(
            String key,
            int pid,
            long startTime,
            int uid,
            List<ForeignRegion> regions,
            List<long[]> removed,
            int unlogged,
            String problem,
            int takeovers) {}

    /** Counts one more takeover of {@code r} in its record (rewritten, then renamed into place); returns the count. */
    public int tookOver(Recorded r) throws IOException {
        Path file = dir.resolve(r.key() + ".json");
        ObjectNode o = (ObjectNode) JSON.readTree(Files.readString(file, StandardCharsets.UTF_8));
        int n = r.takeovers() + 1;
        o.put("takeovers", n);
        Path tmp = dir.resolve(r.key() + ".json.tmp");
        Files.writeString(tmp, JSON.writeValueAsString(o), StandardCharsets.UTF_8);
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        return n;
    }

    /** Every VM recorded in the directory, read back, each with what is wrong with it if anything. */
    public List<Recorded> recorded() throws IOException {
        List<Recorded> out = new ArrayList<>();
        try (Stream<Path> files = Files.list(dir)) {
            for (Path p : files.filter(f -> f.getFileName().toString().endsWith(".json"))
                    .sorted()
                    .toList()) {
                String name = p.getFileName().toString();
                out.add(read(name.substring(0, name.length() - ".json".length())));
            }
        }
        return out;
    }

    private Recorded read(String key) {
        int pid = -1;
        long start = -1;
        try {
            JsonNode o = JSON.readTree(Files.readString(dir.resolve(key + ".json"), StandardCharsets.UTF_8));
            pid = o.path("pid").asInt(-1);
            start = o.path("start_time").asLong(-1);
            int uid = o.path("uid").asInt(-1);
            if (pid <= 0 || start < 0 || !o.path("regions").isArray())
                return unusable(key, pid, start, uid, List.of(), "its record is damaged");
            if (!source.equals(o.path("source").asString()))
                return unusable(
                        key,
                        pid,
                        start,
                        uid,
                        List.of(),
                        "it was served from another source (" + o.path("source").asString() + ")");
            List<ForeignRegion> regions = new ArrayList<>();
            for (JsonNode r : o.path("regions"))
                regions.add(new ForeignRegion(
                        r.get(0).asLong(),
                        r.get(1).asLong(),
                        r.get(2).asLong(),
                        r.get(3).asLong()));
            byte[] log = Files.readAllBytes(dir.resolve(key + ".removed"));
            if (log.length % REMOVAL != 0)
                return unusable(
                        key, pid, start, uid, regions, "its removal log was cut short: a removal's range is unknown");
            ByteBuffer b = ByteBuffer.wrap(log).order(ByteOrder.LITTLE_ENDIAN);
            List<long[]> removed = new ArrayList<>();
            java.util.Set<List<Long>> logged = new java.util.HashSet<>();
            while (b.hasRemaining()) {
                long[] x = {b.getLong(), b.getLong()};
                removed.add(x);
                logged.add(List.of(x[0], x[1]));
            }
            int unlogged = 0;
            for (long[] x : removalsIn(dir.resolve(key + ".events"))) {
                if (logged.contains(List.of(x[0], x[1]))) continue; // the last read's, recorded before the death
                removed.add(x);
                unlogged++;
            }
            return new Recorded(
                    key,
                    pid,
                    start,
                    uid,
                    regions,
                    removed,
                    unlogged,
                    null,
                    o.path("takeovers").asInt(0));
        } catch (IOException | RuntimeException e) {
            return unusable(key, pid, start, -1, List.of(), "its record is unreadable: " + e.getMessage());
        }
    }

    /** The removals among the events in {@code file} (the last read of a handler that died, or none). */
    static List<long[]> removalsIn(Path file) throws IOException {
        if (!Files.exists(file)) return List.of();
        byte[] bytes = Files.readAllBytes(file);
        long size = dev.gmem.uffd.UffdAbi.MSG.byteSize();
        List<long[]> out = new ArrayList<>();
        try (java.lang.foreign.Arena a = java.lang.foreign.Arena.ofConfined()) {
            java.lang.foreign.MemorySegment m = a.allocate(dev.gmem.uffd.UffdAbi.MSG, bytes.length / size);
            java.lang.foreign.MemorySegment.copy(
                    bytes, 0, m, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (int) m.byteSize());
            for (int i = 0; i < m.byteSize() / size; i++) {
                if (dev.gmem.uffd.UffdMessages.event(m, i) != dev.gmem.uffd.UffdAbi.EVENT_REMOVE) continue;
                long start = dev.gmem.uffd.UffdMessages.removeStart(m, i),
                        end = dev.gmem.uffd.UffdMessages.removeEnd(m, i);
                if (start < end) out.add(new long[] {start, end});
            }
        }
        return out;
    }

    private static Recorded unusable(
            String key, int pid, long start, int uid, List<ForeignRegion> regions, String problem) {
        return new Recorded(key, pid, start, uid, regions, List.of(), 0, problem, 0);
    }

    /** Reopens a recorded VM's removal log for appending, for the handler that takes it over. */
    public Vm reopen(String key) throws IOException {
        return new Vm(
                key,
                FileChannel.open(dir.resolve(key + ".removed"), StandardOpenOption.WRITE, StandardOpenOption.APPEND));
    }

    /** Removes a recorded VM's files (its VMM is gone, or it was dropped). */
    public void forget(String key) {
        try {
            Files.deleteIfExists(dir.resolve(key + ".json"));
            Files.deleteIfExists(dir.resolve(key + ".removed"));
            Files.deleteIfExists(dir.resolve(key + ".events"));
        } catch (IOException ignored) {
            // left for the next handler, which finds a VMM that is gone and removes them
        }
    }

    /** Releases the directory's lock; the records stay, for the next handler. */
    @Override
    public void close() {
        closed = true;
        beating.interrupt();
        try {
            beating.join(1000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        alive.putLong(0, System.currentTimeMillis());
        try {
            lock.release();
            lockFile.close();
        } catch (IOException ignored) {
            // the lock goes with the process anyway
        }
    }
}
