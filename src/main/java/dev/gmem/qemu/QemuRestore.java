package dev.gmem.qemu;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotFormatException;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * Restores a gmem snapshot of QEMU into a new QEMU: guest RAM eagerly into a new memfd (checked
 * chunk by chunk before a byte of it is written), QEMU started on it with the caller's command line
 * plus the matching {@code memory-backend-file} (QEMU opens the memfd as {@code /proc/PID/fd/N}),
 * {@code -incoming defer} and a QMP socket of gmem's; then the device state fed through QEMU's
 * migration with {@code x-ignore-shared}, and the VM continued.
 *
 * <p>Why a memfd and not a tmpfs file: both are shmem, written by the same write() path at the same
 * speed, but a memfd has no name to remove. Once QEMU has opened it, gmem closes its descriptor
 * and the RAM lives exactly as long as QEMU, even if gmem is killed; a tmpfs file outlives a crash.
 * {@code ramDir} asks for a file in a directory instead (another tmpfs mount, say); gmem removes
 * its name as soon as QEMU holds it open, so it does not outlive QEMU either.
 */
public final class QemuRestore {
    private QemuRestore() {}

    /** What QEMU's standard input and output are: gmem's own, or pipes for the caller. */
    public enum Stdio {
        INHERIT,
        PIPE
    }

    /**
     * @param ramDir where the RAM file goes, or null for a memfd
     * @param force restore a snapshot taken by another QEMU version
     * @param qmpSocket where QEMU's QMP socket goes, or null for one in a new private directory
     * @param stderr where QEMU's standard error goes on (it is also kept, the last 8 KiB of it, for errors)
     */
    public record Options(
            Path ramDir,
            boolean force,
            Path qmpSocket,
            Stdio stdio,
            OutputStream stderr,
            int threads,
            Duration timeout) {}

    /** Each phase's wall time in milliseconds, from the start of the restore. */
    public record Phases(
            double openMs, double ramMs, double qemuStartMs, double deviceStateMs, double contMs, double totalMs) {}

    public record Report(
            String snapshot,
            QemuMeta qemu,
            String qemuRunning,
            String ramFile,
            long ramDataBytes,
            String qmpSocket,
            int qemuPid,
            Phases phases) {}

    /**
     * Restores {@code snapshot} into the QEMU that {@code command} (program first) starts.
     * Everything that can be checked is checked before QEMU starts: the snapshot's checksums (every
     * chunk, as RAM is restored), its QEMU record, the command's machine type, RAM id and size. Two
     * checks need the QEMU itself and are made before it is given any device state: its version, and
     * the machine it made of an alias that the snapshot's record resolved.
     */
    public static Running start(Path snapshot, List<String> command, Options options, Consumer<String> status)
            throws IOException {
        return start(snapshot, command, options, status, r -> {});
    }

    /**
     * As {@link #start(Path, List, Options, Consumer)}, handing {@code started} the QEMU as soon as
     * it is started (before its restore is complete), for a signal handler that must stop it.
     */
    public static Running start(
            Path snapshot, List<String> command, Options options, Consumer<String> status, Consumer<Running> started)
            throws IOException {
        long t0 = System.nanoTime();
        QemuArgs args = QemuArgs.parse(command);
        Running running = null;
        Destination dst = null;
        Path ramFile = null;
        Path socketDir = null;
        try (Snapshot source = Snapshot.open(snapshot)) {
            QemuMeta meta = meta(source);
            byte[] deviceState = source.attachment(QemuMeta.DEVICE_STATE);
            if (deviceState == null)
                throw new SnapshotFormatException(
                        snapshot, "has no QEMU device state (attachment '" + QemuMeta.DEVICE_STATE + "')");
            if (source.size() != meta.ramSize())
                throw new SnapshotFormatException(
                        snapshot,
                        "holds " + source.size() + " bytes of RAM, but its QEMU record says " + meta.ramSize());
            args.check(meta);
            // an alias ("q35") that the snapshot's QEMU gave its machine is taken for it, and what the started QEMU
            // made
            // of it is checked before any device state; any other alias, or any under --force, is resolved by asking
            // the QEMU binary while the RAM is restored
            boolean knownAlias = !options.force()
                    && args.machineType() != null
                    && meta.machineAliases().contains(args.machineType());
            var machine = args.machineNeedsResolving(meta) && !knownAlias
                    ? java.util.concurrent.CompletableFuture.supplyAsync(
                            () -> resolveMachine(args.program(), args.machineType()))
                    : java.util.concurrent.CompletableFuture.completedFuture(meta.machine());
            long tOpen = System.nanoTime();

            status.accept("restoring " + meta.ramSize() / (1 << 20) + " MiB of guest RAM ...");
            if (options.ramDir() == null) {
                dst = Destination.anonymous(GuestMemory.Backend.MEMFD, source);
            } else {
                ramFile = options.ramDir()
                        .resolve("gmem-qemu-" + Posix.processId() + "-" + Long.toHexString(System.nanoTime()) + ".ram");
                dst = Destination.export(ramFile, source.size());
            }
            EagerRestore.Report restored = EagerRestore.restore(
                    source, dst.memory(), new EagerRestore.Options(null, options.threads(), false, false), b -> {});
            dst.commit();
            String memPath = ramFile != null
                    ? ramFile.toString()
                    : "/proc/" + Posix.processId() + "/fd/" + dst.memory().fd().number();
            try {
                args.checkMachine(meta, machine.get(20, TimeUnit.SECONDS));
            } catch (java.util.concurrent.TimeoutException | java.util.concurrent.ExecutionException e) {
                throw new IOException(args.program() + " -machine help did not answer: " + e, e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted while asking " + args.program() + " for its machine types");
            }
            long tRam = System.nanoTime();

            Path socket = options.qmpSocket();
            if (socket != null && Files.exists(socket, java.nio.file.LinkOption.NOFOLLOW_LINKS))
                throw new QemuArgs.RefusedException(
                        socket + " exists: gmem puts QEMU's QMP socket at a new path (--qmp)");
            if (socket == null) {
                socketDir = Files.createTempDirectory(
                        "gmem-qemu-",
                        PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
                socket = socketDir.resolve("qmp.sock");
            }
            List<String> full = new ArrayList<>(command);
            full.addAll(List.of(
                    "-object",
                    "memory-backend-file,id=" + QemuArgs.quote(meta.ramId()) + ",size=" + meta.ramSize() + ",mem-path="
                            + QemuArgs.quote(memPath) + ",share=on",
                    "-machine",
                    "memory-backend=" + QemuArgs.quote(meta.ramId())));
            if (args.machineType() == null) full.addAll(List.of("-machine", QemuArgs.quote(meta.machine())));
            if (args.ramSize() < 0) full.addAll(List.of("-m", meta.ramSize() / 1024 + "K"));
            if (!args.paused()) full.add("-S");
            full.addAll(List.of(
                    "-incoming", "defer", "-qmp", "unix:" + QemuArgs.quote(socket.toString()) + ",server=on,wait=off"));
            status.accept("starting QEMU ...");
            ProcessBuilder pb = new ProcessBuilder(full);
            if (options.stdio() == Stdio.INHERIT) {
                pb.redirectInput(ProcessBuilder.Redirect.INHERIT).redirectOutput(ProcessBuilder.Redirect.INHERIT);
            }
            Process qemu;
            try {
                qemu = pb.start();
            } catch (IOException e) {
                throw new IOException("cannot start QEMU (" + args.program() + "): " + e.getMessage(), e);
            }
            running = new Running(qemu, socket, socketDir, ramFile, options.stderr());
            socketDir = null;
            started.accept(running);
            Qmp qmp;
            try {
                qmp = Qmp.connectWhenReady(socket, options.timeout(), qemu);
            } catch (IOException e) {
                throw running.died(e);
            }
            long tStarted = System.nanoTime();
            try (qmp) {
                if (qmp.pid() != qemu.pid())
                    throw new QmpException("the QMP socket " + socket + " belongs to another process (pid " + qmp.pid()
                            + "), not to the QEMU gmem started (pid " + qemu.pid() + ")");
                // QEMU holds the RAM now: gmem lets go of it, so it lives exactly as long as QEMU
                dst.close();
                dst = null;
                if (ramFile != null) Files.deleteIfExists(ramFile);
                Qmp.Version v = qmp.version();
                if (!v.number().equals(meta.qemuVersion()) && !options.force())
                    throw new QemuArgs.RefusedException(
                            "the snapshot's device state is from QEMU " + meta.qemuVersion() + ", this QEMU is "
                                    + v.number() + ": device state is specific to a version (--force tries anyway)");
                if (knownAlias) {
                    // the alias was taken from the snapshot's record: what this QEMU made of it is checked before
                    // it is given any device state (a build of the same version number may map it elsewhere)
                    args.checkMachine(meta, QemuSnapshot.machineType(qmp));
                }
                QemuSnapshot.setCapability(qmp, "x-ignore-shared", true);
                loadDeviceState(qmp, deviceState, options.timeout());
                long tLoaded = System.nanoTime();
                String state =
                        qmp.execute("query-status", Map.of()).path("status").asString("");
                // "prelaunch" when the snapshot's VM had never run
                if (!state.equals("paused") && !state.equals("prelaunch"))
                    throw new QmpException("after loading the device state QEMU is '" + state + "', not 'paused'");
                qmp.execute("cont", Map.of());
                long tCont = System.nanoTime();
                running.report = new Report(
                        snapshot.toString(),
                        meta,
                        v.toString(),
                        ramFile != null ? ramFile.toString() : "memfd",
                        restored.bytesRestored(),
                        socket.toString(),
                        qmp.pid(),
                        new Phases(
                                ms(t0, tOpen),
                                ms(tOpen, tRam),
                                ms(tRam, tStarted),
                                ms(tStarted, tLoaded),
                                ms(tLoaded, tCont),
                                ms(t0, tCont)));
            } catch (IOException e) {
                throw running.died(e);
            }
            Running r = running;
            running = null;
            return r;
        } finally {
            // on failure: QEMU stopped and reaped, and no RAM file or socket directory left behind
            if (running != null) running.close();
            if (dst != null) dst.close();
            if (ramFile != null && dst != null) Files.deleteIfExists(ramFile);
            if (socketDir != null) removeDir(socketDir);
        }
    }

    private static QemuMeta meta(Snapshot source) throws IOException {
        byte[] bytes = source.attachment(QemuMeta.ATTACHMENT);
        if (bytes == null)
            throw new SnapshotFormatException(
                    source.path(),
                    "is not a snapshot of QEMU (it has no '" + QemuMeta.ATTACHMENT
                            + "' record): take one with gmem qemu snapshot");
        try {
            return QemuMeta.fromText(bytes);
        } catch (IllegalArgumentException e) {
            throw new SnapshotFormatException(source.path(), e.getMessage());
        }
    }

    /** Feeds {@code state} to QEMU's incoming migration through a pipe, and waits until it is loaded. */
    private static void loadDeviceState(Qmp qmp, byte[] state, Duration timeout) throws IOException {
        Fd[] pipe = Fd.pipe(Linux.O_NONBLOCK);
        try (Fd write = pipe[1]) {
            try (Fd read = pipe[0]) {
                qmp.execute("getfd", Map.of("fdname", QemuSnapshot.FD_NAME), read, Qmp.DEFAULT_TIMEOUT);
            }
            qmp.execute("migrate-incoming", Map.of("uri", "fd:" + QemuSnapshot.FD_NAME));
            writeAll(write, state, timeout);
        }
        QemuSnapshot.awaitMigration(qmp, "completed", timeout);
    }

    private static void writeAll(Fd fd, byte[] bytes, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        Poller poller = new Poller(Linux.POLLOUT, fd);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment data = arena.allocate(Math.max(1, bytes.length));
            MemorySegment.copy(MemorySegment.ofArray(bytes), 0, data, 0, bytes.length);
            long at = 0;
            while (at < bytes.length) {
                long left = deadline - System.nanoTime();
                if (left <= 0)
                    throw new QmpException("QEMU did not take its device state within " + timeout.toSeconds() + " s");
                if (poller.poll((int) Math.max(1, Math.min(1000, left / 1_000_000))) == 0) continue;
                try {
                    at += fd.write(data.asSlice(at));
                } catch (SyscallException e) {
                    if (e.is(Errno.EAGAIN)) continue;
                    throw new QmpException("QEMU stopped reading its device state: " + e.errnoText(), null, e);
                }
            }
        }
    }

    /** The machine type {@code name} stands for in {@code program} (an alias such as "q35" resolved), or {@code name}. */
    static String resolveMachine(String program, String name) {
        Path out = null;
        try {
            out = Files.createTempFile("gmem-qemu-machines-", ".txt");
            Process p = new ProcessBuilder(program, "-machine", "help")
                    .redirectErrorStream(true)
                    .redirectOutput(out.toFile())
                    .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                    .start();
            if (!p.waitFor(10, TimeUnit.SECONDS)) {
                p.destroyForcibly().waitFor();
                return name;
            }
            for (String line :
                    Files.readString(out, StandardCharsets.ISO_8859_1).split("\n")) {
                String[] f = line.trim().split("\\s+", 2);
                if (f.length == 2 && f[0].equals(name)) {
                    int at = f[1].indexOf("(alias of ");
                    if (at >= 0) return f[1].substring(at + 10, f[1].indexOf(')', at));
                    return name;
                }
            }
        } catch (IOException e) {
            return name;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            if (out != null) {
                try {
                    Files.deleteIfExists(out);
                } catch (IOException e) {
                    // a temporary file the OS cleans
                }
            }
        }
        return name;
    }

    static void removeDir(Path dir) {
        try (var files = Files.list(dir)) {
            for (Path p : files.toList()) Files.deleteIfExists(p);
            Files.deleteIfExists(dir);
        } catch (IOException e) {
            // a directory someone else changed: left as it is
        }
    }

    private static double ms(long from, long to) {
        return Math.round((to - from) / 1e4) / 100.0;
    }

    /**
     * A QEMU gmem started: reaped, and its QMP directory removed, by {@link #waitFor} or
     * {@link #close} (which stops it first, SIGTERM then SIGKILL after 5 s).
     */
    public static final class Running implements AutoCloseable {
        private static final int TAIL = 8 << 10;

        private final Process process;
        private final Path socket;
        private final Path socketDir;
        private final Path ramFile;
        private final Thread pump;
        private final ByteArrayOutputStream tail = new ByteArrayOutputStream();
        private volatile Report report;

        Running(Process process, Path socket, Path socketDir, Path ramFile, OutputStream stderr) {
            this.process = process;
            this.socket = socket;
            this.socketDir = socketDir;
            this.ramFile = ramFile;
            this.pump = Thread.ofPlatform()
                    .daemon()
                    .name("gmem-qemu-stderr")
                    .start(() -> pump(process.getErrorStream(), stderr));
        }

        private void pump(InputStream in, OutputStream out) {
            byte[] b = new byte[4096];
            try {
                for (int n; (n = in.read(b)) > 0; ) {
                    synchronized (tail) {
                        tail.write(b, 0, n);
                        if (tail.size() > 2 * TAIL) {
                            byte[] keep = tail.toByteArray();
                            tail.reset();
                            tail.write(keep, keep.length - TAIL, TAIL);
                        }
                    }
                    if (out != null) {
                        out.write(b, 0, n);
                        out.flush();
                    }
                }
            } catch (IOException e) {
                // QEMU's stderr closed
            }
        }

        public Process process() {
            return process;
        }

        public Path qmpSocket() {
            return socket;
        }

        public Report report() {
            return report;
        }

        /** The last of what QEMU wrote on its standard error. */
        public String stderrTail() {
            synchronized (tail) {
                String s = tail.toString(StandardCharsets.UTF_8);
                return s.length() > TAIL ? s.substring(s.length() - TAIL) : s;
            }
        }

        /** Waits for QEMU to exit, and returns its exit status. */
        public int waitFor() throws InterruptedException {
            int status = process.waitFor();
            cleanUp();
            return status;
        }

        /**
         * The error to report for {@code e} when QEMU may have died of it: QEMU's exit status and the
         * end of its standard error, when it exited.
         */
        IOException died(IOException e) {
            if (e instanceof QemuArgs.RefusedException) return e; // gmem's own refusal: QEMU is fine, and is stopped
            try {
                if (process.waitFor(2, TimeUnit.SECONDS)) {
                    pump.join(1000);
                    String err = stderrTail().strip();
                    return new QemuExitedException(
                            "QEMU exited with status " + process.exitValue() + " during the restore"
                                    + (err.isEmpty() ? "" : ": " + err.replace('\n', ' ')),
                            process.exitValue(),
                            e);
                }
            } catch (InterruptedException x) {
                Thread.currentThread().interrupt();
            }
            return e;
        }

        private void cleanUp() {
            if (socketDir != null) removeDir(socketDir);
            if (ramFile != null) {
                try {
                    Files.deleteIfExists(ramFile);
                } catch (IOException e) {
                    // not gmem's to worry about once QEMU is gone
                }
            }
        }

        @Override
        public void close() {
            try {
                if (process.isAlive()) {
                    process.destroy();
                    if (!process.waitFor(5, TimeUnit.SECONDS))
                        process.destroyForcibly().waitFor();
                }
                pump.join(1000);
            } catch (InterruptedException e) {
                process.destroyForcibly();
                Thread.currentThread().interrupt();
            }
            cleanUp();
        }
    }

    /** QEMU exited while gmem restored into it. */
    public static final class QemuExitedException extends IOException {
        private static final long serialVersionUID = 1L;
        private final int exitStatus;

        QemuExitedException(String message, int exitStatus, Throwable cause) {
            super(message, cause);
            this.exitStatus = exitStatus;
        }

        public int exitStatus() {
            return exitStatus;
        }
    }
}
