package dev.gmem.bench;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.qemu.QemuRam;
import dev.gmem.qemu.Qmp;
import dev.gmem.qemu.QmpException;
import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/**
 * QEMU's own save and load against gmem's, on one real Linux guest (LinuxGuest) under TCG, in one
 * run with the rounds interleaved: save time (the VM stopped until it runs again, for gmem the whole
 * command), bytes on disk, time from starting the restore until the guest's next counter line, and
 * RAM allocated once it runs. QEMU's own save has its bandwidth cap raised; its load goes into the
 * same kind of file gmem restores into (shmem: a tmpfs file).
 */
public final class QemuBench {
    private QemuBench() {}

    /**
     * @param compare another gmem launcher (another build) whose {@code gmem qemu restore} of the same
     *     plain snapshot runs in every round too, for a side-by-side figure of two builds; may be null
     */
    public record Options(int ramMiB, int dataMiB, int rounds, long warmBytes, Path dir, Path launcher, Path compare) {}

    /** A way to save: medians of its rounds. */
    public record Save(String way, double medianMs, long fileBytes, List<Double> runsMs) {}

    /** A way to restore: medians of its rounds. */
    public record Load(String way, double medianToNextLineMs, long ramAllocatedBytes, List<Double> runsMs) {}

    public record Report(
            String qemu,
            long ramBytes,
            long guestDataBytes,
            List<Save> saves,
            List<Load> loads,
            double loadRatio,
            double allocatedOverData,
            double sizeRatio,
            double compressedSizeRatio) {}

    private static final Duration WAIT = Duration.ofSeconds(60);

    public static Report run(Options o, Consumer<String> status) throws Exception {
        String why = LinuxGuest.unavailable();
        if (why != null) throw new dev.gmem.memory.UnsupportedFeatureException("QEMU", "the QEMU benchmark", why);
        Path work = OutputFile.scratchDirectory(o.dir(), "gmem-bench-qemu-");
        try {
            status.accept("warming memory ...");
            BenchSupport.warmMemory(BenchSupport.warmBytes(o.warmBytes()));
            Path initramfs = LinuxGuest.initramfs(work.resolve("initramfs.cpio"));
            List<String> guest = LinuxGuest.command(initramfs, o.dataMiB(), 10_000);
            List<String> source = new ArrayList<>(guest);
            long ram = (long) o.ramMiB() << 20;
            source.addAll(List.of(
                    "-m", o.ramMiB() + "M",
                    "-object",
                            "memory-backend-file,id=pc.ram,size=" + ram + ",mem-path=" + work.resolve("source.ram")
                                    + ",share=on",
                    "-machine", "memory-backend=pc.ram"));
            Path sourceQmp = work.resolve("source.sock");
            source.addAll(List.of("-qmp", "unix:" + sourceQmp + ",server=on,wait=off"));
            status.accept("booting the guest (" + o.ramMiB() + " MiB, " + o.dataMiB() + " MiB of random data) ...");
            Process src = new ProcessBuilder(source)
                    .redirectError(ProcessBuilder.Redirect.DISCARD)
                    .start();
            String version;
            Map<String, List<Double>> saves = new LinkedHashMap<>();
            Map<String, Long> saveBytes = new LinkedHashMap<>();
            Map<String, List<Double>> loads = new LinkedHashMap<>();
            Map<String, Long> allocated = new LinkedHashMap<>();
            long dataBytes = 0;
            try (LinuxGuest.Console console = new LinuxGuest.Console(src)) {
                console.awaitTick(5, WAIT);
                Path own = work.resolve("own.stream");
                Path plain = work.resolve("gmem.snap");
                Path zstd = work.resolve("gmem-zstd.snap");
                try (Qmp q = Qmp.connectWhenReady(sourceQmp, WAIT, src)) {
                    version = q.version().toString();
                }
                // round -1 is untimed; each save and load connects anew, as QMP takes one client at a time
                for (int round = -1; round < o.rounds(); round++) {
                    status.accept(
                            round < 0 ? "untimed round ..." : "round " + (round + 1) + " of " + o.rounds() + " ...");
                    String ownWay = "QEMU's own (migrate to a file)";
                    try (Qmp q = Qmp.connect(sourceQmp, WAIT)) {
                        record(saves, ownWay, round, ownSave(q, own));
                    }
                    saveBytes.put(ownWay, Files.size(own));
                    console.awaitTick(LinuxGuest.Console.ticks(console.text()).getLast() + 3, WAIT);
                    for (Path f : List.of(plain, zstd)) {
                        String way = f == plain ? "gmem qemu snapshot" : "gmem qemu snapshot --compress zstd";
                        List<String> cmd = new ArrayList<>(List.of(
                                o.launcher().toString(),
                                "qemu",
                                "snapshot",
                                "--qmp",
                                sourceQmp.toString(),
                                "-o",
                                f.toString(),
                                "--resume"));
                        if (f == zstd) cmd.addAll(List.of("--compress", "zstd"));
                        record(saves, way, round, time(cmd, work));
                        saveBytes.put(way, Files.size(f));
                        console.awaitTick(
                                LinuxGuest.Console.ticks(console.text()).getLast() + 3, WAIT);
                    }
                    String ownLoadWay = "QEMU's own (-incoming from the file, RAM a tmpfs file)";
                    Load ownLoad = ownLoad(guest, own, ram, work);
                    record(loads, ownLoadWay, round, ownLoad.medianToNextLineMs());
                    allocated.put(ownLoadWay, ownLoad.ramAllocatedBytes());
                    for (String way : List.of(
                            "gmem qemu restore",
                            "gmem qemu restore --ram-dir (tmpfs)",
                            "gmem qemu restore, zstd snapshot")) {
                        Load l = gmemLoad(
                                o.launcher(),
                                way.contains("zstd") ? zstd : plain,
                                guest,
                                way.contains("ram-dir") ? work : null,
                                work);
                        record(loads, way, round, l.medianToNextLineMs());
                        allocated.put(way, l.ramAllocatedBytes());
                    }
                    if (o.compare() != null) {
                        String way = "gmem qemu restore by " + o.compare();
                        Load l = gmemLoad(o.compare(), plain, guest, null, work);
                        record(loads, way, round, l.medianToNextLineMs());
                        allocated.put(way, l.ramAllocatedBytes());
                    }
                }
                try (dev.gmem.snapshot.Snapshot s = dev.gmem.snapshot.Snapshot.open(plain)) {
                    dataBytes = s.counts().dataBytes();
                }
                try (Qmp q = Qmp.connect(sourceQmp, WAIT)) {
                    q.execute("quit", Map.of());
                } catch (QmpException e) {
                    // the connection may close before the reply
                }
            } finally {
                src.destroyForcibly();
                src.waitFor(10, TimeUnit.SECONDS);
            }
            List<Save> s = new ArrayList<>();
            saves.forEach((way, runs) -> s.add(new Save(way, median(runs), saveBytes.get(way), runs)));
            List<Load> l = new ArrayList<>();
            loads.forEach((way, runs) -> l.add(new Load(way, median(runs), allocated.get(way), runs)));
            return new Report(
                    version,
                    ram,
                    dataBytes,
                    s,
                    l,
                    l.get(1).medianToNextLineMs() / l.get(0).medianToNextLineMs(),
                    (double) l.get(1).ramAllocatedBytes() / dataBytes,
                    (double) s.get(1).fileBytes() / s.get(0).fileBytes(),
                    (double) s.get(2).fileBytes() / s.get(0).fileBytes());
        } finally {
            OutputFile.removeScratch(work);
        }
    }

    private static void record(Map<String, List<Double>> into, String way, int round, double ms) {
        List<Double> runs = into.computeIfAbsent(way, k -> new ArrayList<>());
        if (round >= 0) runs.add(ms);
    }

    private static double median(List<Double> v) {
        if (v.isEmpty()) return Double.NaN;
        return BenchSupport.median(v.stream().mapToDouble(Double::doubleValue).toArray());
    }

    /** QEMU's own save of everything to {@code file}, bandwidth cap raised: from stop until it runs again. */
    private static double ownSave(Qmp q, Path file) throws IOException {
        Files.deleteIfExists(file);
        long t0 = System.nanoTime();
        q.execute("stop", Map.of());
        q.execute(
                "migrate-set-capabilities",
                Map.of("capabilities", List.of(Map.of("capability", "x-ignore-shared", "state", false))));
        q.execute("migrate-set-parameters", Map.of("max-bandwidth", Long.MAX_VALUE / 2));
        q.execute("migrate", Map.of("uri", "exec:cat > " + file));
        awaitMigration(q);
        q.execute("cont", Map.of());
        return (System.nanoTime() - t0) / 1e6;
    }

    private static void awaitMigration(Qmp q) throws IOException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        while (true) {
            String s = q.execute("query-migrate", Map.of()).path("status").asString("");
            if (s.equals("completed")) return;
            if (s.equals("failed") || System.nanoTime() > deadline) throw new IOException("QEMU's own save: " + s);
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted");
            }
        }
    }

    /** Runs {@code cmd} to its end; its wall time in ms. */
    private static double time(List<String> cmd, Path work) throws IOException, InterruptedException {
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd)
                .directory(work.toFile())
                .redirectErrorStream(true)
                .start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor();
            throw new IOException(String.join(" ", cmd) + ": did not finish");
        }
        double ms = (System.nanoTime() - t0) / 1e6;
        if (p.exitValue() != 0)
            throw new IOException(String.join(" ", cmd) + ": exit " + p.exitValue() + ": " + out.strip());
        return ms;
    }

    /** QEMU's own load: a new QEMU with -incoming from the file into a new tmpfs file, until its next counter line. */
    private static Load ownLoad(List<String> guest, Path stream, long ram, Path work) throws Exception {
        Path ramFile = work.resolve("own.ram");
        Files.deleteIfExists(ramFile);
        List<String> cmd = new ArrayList<>(guest);
        cmd.addAll(List.of(
                "-m", (ram >> 20) + "M",
                "-object", "memory-backend-file,id=pc.ram,size=" + ram + ",mem-path=" + ramFile + ",share=on",
                "-machine", "memory-backend=pc.ram",
                "-incoming", "exec:cat " + stream));
        Path socket = work.resolve("own.sock");
        cmd.addAll(List.of("-qmp", "unix:" + socket + ",server=on,wait=off"));
        BenchSupport.settle();
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd)
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start();
        try (LinuxGuest.Console c = new LinuxGuest.Console(p)) {
            // the stream says the VM was paused when saved (as a save stops it): continued once loaded
            try (Qmp q = Qmp.connectWhenReady(socket, WAIT, p)) {
                awaitMigration(q);
                q.execute("cont", Map.of());
            }
            c.awaitTick(0, WAIT);
            double ms = (System.nanoTime() - t0) / 1e6;
            long allocated;
            try (Fd fd = Fd.open(ramFile, Linux.O_RDONLY | Linux.O_CLOEXEC, 0)) {
                allocated = allocated(fd, ram);
            }
            return new Load("own", ms, allocated, List.of());
        } finally {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            Files.deleteIfExists(ramFile);
        }
    }

    /** {@code gmem qemu restore} (through the launcher, as a user runs it) until the guest's next counter line. */
    private static Load gmemLoad(Path launcher, Path snap, List<String> guest, Path ramDir, Path work)
            throws Exception {
        Path socket = work.resolve("restored.sock");
        List<String> cmd = new ArrayList<>(
                List.of(launcher.toString(), "qemu", "restore", snap.toString(), "--qmp", socket.toString()));
        if (ramDir != null) cmd.addAll(List.of("--ram-dir", ramDir.toString()));
        cmd.add("--");
        cmd.addAll(guest);
        BenchSupport.settle();
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(cmd)
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start();
        try (LinuxGuest.Console c = new LinuxGuest.Console(p)) {
            c.awaitTick(0, WAIT);
            double ms = (System.nanoTime() - t0) / 1e6;
            long allocated;
            try (Qmp q = connectAgain(socket, p)) {
                QemuRam r = QemuRam.locate(q);
                try (Fd fd = Fd.open(r.file(), Linux.O_RDONLY | Linux.O_CLOEXEC, 0)) {
                    allocated = allocated(fd, r.size());
                }
                q.execute("quit", Map.of());
            } catch (QmpException e) {
                if (e.errorClass() != null) throw e;
                allocated = -1;
            }
            p.waitFor(20, TimeUnit.SECONDS);
            return new Load("gmem", ms, allocated, List.of());
        } finally {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** gmem lets go of the QMP socket right after 'cont': a first connection may still meet its own. */
    private static Qmp connectAgain(Path socket, Process p) throws IOException {
        return Qmp.connectWhenReady(socket, WAIT, p);
    }

    private static long allocated(Fd fd, long size) throws IOException {
        long sum = 0;
        long[] e = fd.dataExtents(size);
        for (int i = 0; i + 1 < e.length; i += 2) sum += e[i + 1] - e[i];
        return sum;
    }
}
