package dev.gmem.qemu;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.function.LongConsumer;
import tools.jackson.databind.JsonNode;

/**
 * Takes a gmem snapshot of a running QEMU: guest RAM straight from the file that backs it, the
 * device state through QEMU's own migration with {@code x-ignore-shared} (so the stream holds
 * devices, and the small RAM blocks that are not shared such as firmware, but not guest RAM),
 * both in one snapshot file under its checksums. The VM is stopped for the whole of it; a
 * snapshot that fails leaves QEMU running as it was, with its migration settings restored.
 */
public final class QemuSnapshot {
    /** The descriptor name gmem gives QEMU for the device-state pipe. */
    static final String FD_NAME = "gmem-device-state";

    private QemuSnapshot() {}

    /** What becomes of the VM once the snapshot is written. */
    public enum After {
        /** Left paused (a {@code cont} over QMP resumes it). */
        PAUSE,
        /** Resumed. */
        RESUME,
        /** QEMU is told to quit. */
        QUIT
    }

    public record Options(Codec codec, After after, int threads, Duration timeout) {}

    /** What a snapshot did; times in milliseconds, from the moment the VM stopped. */
    public record Report(
            String output,
            long fileBytes,
            QemuMeta qemu,
            long ramDataBytes,
            double deviceStateMs,
            double packMs,
            double pausedMs,
            String after) {}

    /**
     * Takes the snapshot of the QEMU at {@code qmp} into {@code output}; {@code status} hears each
     * step. {@code abort} receives, before anything is changed, the action that puts QEMU back as it
     * was (for a signal handler: it runs at most once, and is a no-op once the snapshot is done).
     */
    public static Report take(
            Qmp qmp,
            Path output,
            Options options,
            Consumer<String> status,
            LongConsumer progress,
            Consumer<Runnable> abort)
            throws IOException {
        JsonNode state = qmp.execute("query-status", Map.of());
        String run = state.path("status").asString("");
        if (run.equals("inmigrate"))
            throw new QmpException("this QEMU is still waiting for an incoming migration: nothing to snapshot yet");
        if (run.equals("postmigrate") || run.equals("finish-migrate"))
            throw new QmpException("this VM is paused by an earlier snapshot or migration ('" + run
                    + "'), which QEMU will not migrate again: 'cont' it first, or snapshot it with --resume or --quit");
        QemuRam ram = QemuRam.locate(qmp);
        String machine = machineType(qmp);
        java.util.List<String> aliases = machineAliases(qmp, machine);
        // a RAM file gmem may not read is refused now, with the VM untouched
        ram.open().close();
        PutBack putBack = new PutBack(qmp, state.path("running").asBoolean(false), status);
        abort.accept(putBack::run);
        try {
            long t0 = System.nanoTime();
            putBack.stop();
            long tStopped = System.nanoTime();
            status.accept("VM stopped; saving its device state through QEMU's migration ...");
            setCapability(qmp, "x-ignore-shared", true);
            qmp.execute("migrate-set-parameters", Map.of("max-bandwidth", Long.MAX_VALUE / 2));
            byte[] deviceState = saveDeviceState(qmp, ram.size(), options.timeout());
            long tState = System.nanoTime();
            // the RAM file is read only now that the VM is stopped: it cannot change under the scan
            try (RawImage image = RawImage.open(
                    ram.file(), List.of(new Region(0, ram.size(), Region.MIN_PAGE, 0)), options.threads(), b -> {})) {
                QemuMeta meta = new QemuMeta(
                        qmp.version().number(),
                        qmp.version().pkg(),
                        machine,
                        ram.id(),
                        ram.size(),
                        ram.type(),
                        deviceState.length,
                        aliases);
                var attachments = new LinkedHashMap<String, byte[]>();
                attachments.put(QemuMeta.ATTACHMENT, meta.toText());
                attachments.put(QemuMeta.DEVICE_STATE, deviceState);
                status.accept("packing guest RAM (" + image.counts().dataBytes() / (1 << 20) + " MiB of data) ...");
                var packed = SnapshotWriter.pack(image, output, options.codec(), new long[0], attachments, progress);
                long tPacked = System.nanoTime();
                putBack.settings();
                putBack.done();
                switch (options.after()) {
                    case RESUME -> qmp.execute("cont", Map.of());
                    case QUIT -> quit(qmp);
                    case PAUSE -> {}
                }
                return new Report(
                        output.toString(),
                        packed.fileSize(),
                        meta,
                        packed.manifest().counts().dataBytes(),
                        ms(tStopped, tState),
                        ms(tState, tPacked),
                        ms(t0, System.nanoTime()),
                        options.after().name().toLowerCase(java.util.Locale.ROOT));
            }
        } finally {
            putBack.run();
        }
    }

    /**
     * What a snapshot changed in QEMU, and how to change it back: its migration settings, and the
     * run state when the VM was running. Runs at most once, from a failure or a signal; each part on
     * its own, so that one that fails does not keep the VM stopped.
     */
    private static final class PutBack implements Runnable {
        private final Qmp qmp;
        private final boolean wasRunning;
        private final Consumer<String> status;
        private final Map<String, Boolean> capabilities;
        private final long bandwidth;
        private boolean stopping;
        private boolean finished;

        PutBack(Qmp qmp, boolean wasRunning, Consumer<String> status) throws IOException {
            this.qmp = qmp;
            this.wasRunning = wasRunning;
            this.status = status;
            this.capabilities = capabilities(qmp);
            this.bandwidth = qmp.execute("query-migrate-parameters", Map.of())
                    .path("max-bandwidth")
                    .asLong(-1);
        }

        synchronized void stop() throws IOException {
            if (!wasRunning) return;
            stopping = true; // before the command: a stop that times out may still take effect
            qmp.execute("stop", Map.of());
        }

        void settings() throws IOException {
            setCapability(qmp, "x-ignore-shared", capabilities.getOrDefault("x-ignore-shared", false));
            if (bandwidth >= 0) qmp.execute("migrate-set-parameters", Map.of("max-bandwidth", bandwidth));
        }

        /** The snapshot is written and QEMU's settings are back: nothing left to undo. */
        synchronized void done() {
            finished = true;
        }

        @Override
        public synchronized void run() {
            if (finished) return;
            finished = true;
            try {
                qmp.execute("migrate_cancel", Map.of());
                awaitIdle();
            } catch (IOException e) {
                status.accept("could not cancel QEMU's migration: " + e.getMessage());
            }
            try {
                settings();
            } catch (IOException e) {
                status.accept("could not set QEMU's migration settings back: " + e.getMessage());
            }
            try {
                if (stopping) qmp.execute("cont", Map.of());
            } catch (IOException e) {
                status.accept("could not resume the VM: " + e.getMessage());
            }
        }

        /** Waits (10 s at most) for a cancelled migration to end: QEMU takes no settings while one runs. */
        private void awaitIdle() throws IOException {
            long deadline = System.nanoTime() + Qmp.DEFAULT_TIMEOUT.toNanos();
            while (System.nanoTime() < deadline) {
                String s = qmp.execute("query-migrate", Map.of()).path("status").asString("");
                if (!List.of("setup", "active", "cancelling", "pre-switchover", "device", "wait-unplug")
                        .contains(s)) return;
                try {
                    Thread.sleep(2);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    /** The machine type without QOM's suffix: "pc-q35-7.2". */
    static String machineType(Qmp qmp) throws IOException {
        String t = qmp.execute("qom-get", Map.of("path", "/machine", "property", "type"))
                .asString("");
        return t.endsWith("-machine") ? t.substring(0, t.length() - "-machine".length()) : t;
    }

    /** The names this QEMU gives {@code machine} besides its own ("q35" for "pc-q35-7.2"), from query-machines. */
    static java.util.List<String> machineAliases(Qmp qmp, String machine) throws IOException {
        java.util.List<String> out = new java.util.ArrayList<>();
        for (JsonNode m : qmp.execute("query-machines", Map.of())) {
            String alias = m.path("alias").asString("");
            if (m.path("name").asString("").equals(machine) && !alias.isEmpty() && alias.indexOf(',') < 0)
                out.add(alias);
        }
        return out;
    }

    private static Map<String, Boolean> capabilities(Qmp qmp) throws IOException {
        Map<String, Boolean> out = new LinkedHashMap<>();
        for (JsonNode c : qmp.execute("query-migrate-capabilities", Map.of()))
            out.put(c.path("capability").asString(""), c.path("state").asBoolean(false));
        return out;
    }

    static void setCapability(Qmp qmp, String name, boolean on) throws IOException {
        qmp.execute(
                "migrate-set-capabilities", Map.of("capabilities", List.of(Map.of("capability", name, "state", on))));
    }

    private static void quit(Qmp qmp) throws IOException {
        try {
            qmp.execute("quit", Map.of());
        } catch (QmpException e) {
            // QEMU may close the connection before its reply arrives
            if (e.errorClass() != null) throw e;
        }
    }

    /**
     * Runs QEMU's migration into a pipe whose read end gmem drains, and returns the stream: the
     * device state. More than {@code ramSize} bytes would mean guest RAM went into it after all.
     */
    private static byte[] saveDeviceState(Qmp qmp, long ramSize, Duration timeout) throws IOException {
        Fd[] pipe = Fd.pipe(Linux.O_NONBLOCK);
        try (Fd read = pipe[0]) {
            try (Fd write = pipe[1]) {
                qmp.execute("getfd", Map.of("fdname", FD_NAME), write, Qmp.DEFAULT_TIMEOUT);
            }
            qmp.execute("migrate", Map.of("uri", "fd:" + FD_NAME));
            byte[] stream = drain(read, Math.min(ramSize, Snapshot.MAX_ATTACHMENT), timeout);
            JsonNode m = awaitMigration(qmp, "completed", timeout);
            // QEMU counts in "total" the RAM it migrates: the blocks it did not leave out
            long total = m.path("ram").path("total").asLong(0);
            if (total >= ramSize)
                throw new QmpException(
                        "QEMU's migration carried " + total + " bytes of RAM, guest RAM included, instead of"
                                + " leaving it out (x-ignore-shared): this QEMU may leave out only RAM in a named file; use"
                                + " memory-backend-file with mem-path on tmpfs");
            return stream;
        }
    }

    /** Reads {@code fd} to its end within {@code timeout}, refusing more than {@code limit} bytes. */
    static byte[] drain(Fd fd, long limit, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        Poller poller = new Poller(Linux.POLLIN, fd);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(1 << 20);
            while (true) {
                long left = deadline - System.nanoTime();
                if (left <= 0)
                    throw new QmpException("QEMU's device state did not end within " + timeout.toSeconds() + " s");
                if (poller.poll((int) Math.max(1, Math.min(1000, left / 1_000_000))) == 0) continue;
                long n;
                try {
                    n = fd.read(buffer);
                } catch (dev.gmem.linux.SyscallException e) {
                    if (e.is(dev.gmem.linux.Errno.EAGAIN)) continue;
                    throw e;
                }
                if (n == 0) return out.toByteArray();
                out.write(buffer.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE));
                if (out.size() > limit)
                    throw new QmpException("QEMU's migration stream passed " + limit
                            + " bytes: it is copying guest RAM, which x-ignore-shared should have left out");
            }
        }
    }

    /** Waits for QEMU's migration (either way) to reach {@code wanted}, failing with QEMU's error if it fails; its last state. */
    static JsonNode awaitMigration(Qmp qmp, String wanted, Duration timeout) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            JsonNode m = qmp.execute("query-migrate", Map.of());
            String s = m.path("status").asString("");
            if (s.equals(wanted)) return m;
            if (s.equals("failed") || s.equals("cancelled"))
                throw new QmpException(
                        "QEMU's migration " + s + ": " + m.path("error-desc").asString("no reason given"));
            if (System.nanoTime() > deadline)
                throw new QmpException(
                        "QEMU's migration did not complete within " + timeout.toSeconds() + " s (status " + s + ")");
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new QmpException("interrupted while waiting for QEMU's migration");
            }
        }
    }

    private static double ms(long from, long to) {
        return Math.round((to - from) / 1e4) / 100.0;
    }
}
