package dev.gmem.qemu;

import dev.gmem.bench.LinuxGuest;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Assumptions;

/** A QEMU the tests start, with a QMP socket; closing it kills and reaps it. */
final class QemuVm implements AutoCloseable {
    final Process process;
    final Path qmp;
    final LinuxGuest.Console console;

    private QemuVm(Process process, Path qmp) {
        this.process = process;
        this.qmp = qmp;
        this.console = new LinuxGuest.Console(process);
    }

    static void assumeQemu() {
        Assumptions.assumeTrue(
                LinuxGuest.findProgram(LinuxGuest.QEMU) != null,
                LinuxGuest.QEMU + " is not installed (apt-get install qemu-system-x86)");
    }

    static void assumeGuest() {
        String why = LinuxGuest.unavailable();
        Assumptions.assumeTrue(why == null, why);
    }

    /** The options of RAM in a memfd backend {@code id} of {@code mib} MiB. */
    static List<String> memfdRam(String id, int mib) {
        return List.of(
                "-m", mib + "M",
                "-object", "memory-backend-memfd,id=" + id + ",size=" + mib + "M,share=on",
                "-machine", "memory-backend=" + id);
    }

    /** The options of RAM in a memory-backend-file {@code id} at {@code file}. */
    static List<String> fileRam(String id, int mib, Path file) {
        return List.of(
                "-m", mib + "M",
                "-object", "memory-backend-file,id=" + id + ",size=" + mib + "M,mem-path=" + file + ",share=on",
                "-machine", "memory-backend=" + id);
    }

    /** A QEMU with no guest to run, paused before it starts (-S): enough for QMP and migration. */
    static List<String> bare(List<String> ram, String... extra) {
        List<String> c = new ArrayList<>(
                List.of(LinuxGuest.QEMU, "-accel", "tcg", "-nodefaults", "-display", "none", "-machine", "q35", "-S"));
        c.addAll(ram);
        c.addAll(List.of(extra));
        return c;
    }

    /** Starts {@code command} plus a QMP socket at {@code dir/qmp.sock}, and waits until QMP answers. */
    static QemuVm start(List<String> command, Path dir) throws IOException {
        Path qmp = dir.resolve("qmp-" + System.nanoTime() + ".sock");
        List<String> c = new ArrayList<>(command);
        c.addAll(List.of("-qmp", "unix:" + qmp + ",server=on,wait=off"));
        Process p = new ProcessBuilder(c)
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        QemuVm vm = new QemuVm(p, qmp);
        try {
            Qmp.connectWhenReady(qmp, Duration.ofSeconds(20), p).close();
        } catch (IOException | RuntimeException e) {
            vm.close();
            throw e;
        }
        return vm;
    }

    Qmp connect() throws IOException {
        return Qmp.connect(qmp, Duration.ofSeconds(10));
    }

    /** Waits for QEMU to exit by itself; its status. */
    int awaitExit(Duration timeout) throws InterruptedException {
        if (!process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) throw new AssertionError("QEMU did not exit");
        return process.exitValue();
    }

    @Override
    public void close() {
        console.close();
        process.destroyForcibly();
        try {
            process.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
