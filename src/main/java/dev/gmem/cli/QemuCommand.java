package dev.gmem.cli;

import dev.gmem.qemu.QemuRestore;
import dev.gmem.qemu.QemuSnapshot;
import dev.gmem.qemu.Qmp;
import dev.gmem.snapshot.Codec;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(
        name = "qemu",
        header = "Snapshot a running QEMU into one gmem snapshot, and restore it into a new QEMU.",
        mixinStandardHelpOptions = true,
        description = {
            "Guest RAM goes straight between its file and the snapshot, never through QEMU; QEMU's own migration",
            "carries the device state alone (x-ignore-shared), which the snapshot keeps beside the RAM under its",
            "checksums. The guest's RAM must be a shared memory backend: -object memory-backend-memfd,id=ID,size=S,",
            "share=on (or memory-backend-file on tmpfs with share=on) and -machine memory-backend=ID. See docs/qemu.md."
        },
        subcommands = {QemuCommand.SnapshotQemu.class, QemuCommand.RestoreQemu.class})
final class QemuCommand {
    private QemuCommand() {}

    /** {@code --timeout}: the longest wait for QEMU at any one step. */
    static final class QemuTimeout {
        @Option(
                names = "--timeout",
                defaultValue = "60",
                paramLabel = "SECONDS",
                description = "The longest gmem waits for QEMU at any one step (default ${DEFAULT-VALUE}).")
        int seconds;

        @CommandLine.Spec(CommandLine.Spec.Target.MIXEE)
        CommandLine.Model.CommandSpec mixee;

        Duration duration() {
            Options.within(mixee.commandLine(), "--timeout", seconds, 1, 3600, "seconds");
            return Duration.ofSeconds(seconds);
        }
    }

    /** 128 plus the signal's number, as shells expect of a command a signal ended. */
    static int signalStatus(String signal) {
        return 128
                + switch (signal) {
                    case "SIGHUP" -> 1;
                    case "SIGINT" -> 2;
                    default -> 15;
                };
    }

    @Command(
            name = "snapshot",
            header = "Snapshot the running QEMU at a QMP socket: device state and RAM, in one gmem snapshot.",
            mixinStandardHelpOptions = true,
            description = {
                "Asks QEMU over QMP which memory backend holds guest RAM and refuses, saying what to add, unless it is",
                "a shared file or memfd. Then stops the VM, saves the device state through QEMU's migration into a",
                "pipe (max-bandwidth raised, x-ignore-shared on; both set back afterwards), and packs the RAM file",
                "(zero pages and holes are not stored) with the device state, QEMU's version, the machine type and the",
                "RAM's id. The VM stays paused unless --resume or --quit; a snapshot that fails resumes it."
            })
    static final class SnapshotQemu implements Callable<Integer> {
        @Option(names = "--qmp", required = true, paramLabel = "SOCKET", description = "QEMU's QMP Unix socket.")
        Path qmp;

        @Option(
                names = {"-o", "--output"},
                required = true,
                paramLabel = "FILE",
                description = "The snapshot to write.")
        Path output;

        @Option(
                names = "--compress",
                defaultValue = "none",
                paramLabel = "CODEC",
                description = "none, lz4 or zstd, per chunk (default ${DEFAULT-VALUE}).")
        String compress;

        @Option(names = "--resume", description = "Resume the VM once the snapshot is written.")
        boolean resume;

        @Option(names = "--quit", description = "Tell QEMU to quit once the snapshot is written.")
        boolean quit;

        @CommandLine.Mixin
        QemuTimeout timeout;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (resume && quit)
                throw new CommandLine.ParameterException(spec.commandLine(), "--resume and --quit exclude each other");
            Codec codec = SnapshotCommand.codec(spec.commandLine(), compress);
            QemuSnapshot.After after =
                    resume ? QemuSnapshot.After.RESUME : quit ? QemuSnapshot.After.QUIT : QemuSnapshot.After.PAUSE;
            QemuSnapshot.Report r;
            try (Progress line = new Progress(json.on);
                    Qmp q = Qmp.connect(qmp, timeout.duration())) {
                r = QemuSnapshot.take(
                        q,
                        output,
                        new QemuSnapshot.Options(codec, after, SnapshotCommand.threads(), timeout.duration()),
                        line,
                        new ByteProgress(line, "pack", 0),
                        putBack -> Signals.onStop(signal -> {
                            // the partial snapshot is removed already; the VM goes back as it was
                            putBack.run();
                            System.err.println("gmem qemu snapshot: interrupted (" + signal + "); the VM is as it was");
                            return signalStatus(signal);
                        }));
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) out.println(Json.write(r));
            else {
                out.printf(
                        Locale.ROOT,
                        "snapshot %s: %s of RAM '%s' (%s of data), device state %s, %s on disk; QEMU %s, machine %s%n",
                        r.output(),
                        Sizes.format(r.qemu().ramSize()),
                        r.qemu().ramId(),
                        Sizes.format(r.ramDataBytes()),
                        Sizes.format(r.qemu().deviceStateBytes()),
                        Sizes.format(r.fileBytes()),
                        r.qemu().qemuVersion(),
                        r.qemu().machine());
                out.printf(
                        Locale.ROOT,
                        "the VM was paused for %.0f ms (device state %.0f ms, RAM %.0f ms); %s%n",
                        r.pausedMs(),
                        r.deviceStateMs(),
                        r.packMs(),
                        switch (after) {
                            case RESUME -> "it runs again";
                            case QUIT -> "QEMU was told to quit";
                            case PAUSE -> "it stays paused ('cont' over QMP resumes it)";
                        });
            }
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "restore",
            header = "Start QEMU from a gmem snapshot of QEMU: RAM restored first, then the device state, then run.",
            mixinStandardHelpOptions = true,
            description = {
                "Checks the snapshot (every chunk's checksum) and the QEMU command (machine type, RAM id and size) before",
                "QEMU starts, restores the RAM into a new memfd, then runs the QEMU command given after '--' (the program",
                "first) with gmem's additions: the memory backend (same id, QEMU opens the memfd as /proc/PID/fd/N),",
                "-incoming defer, -S and a QMP socket. It feeds the device state through QEMU's migration",
                "(x-ignore-shared), waits for 'paused', continues the VM, and prints each phase's time on stderr with the",
                "QMP socket's path, which is then free for the caller. QEMU keeps this process's stdin and stdout (the",
                "guest's console, with -serial stdio); gmem waits for QEMU and exits with its status. SIGTERM or SIGINT",
                "stops QEMU (SIGTERM, SIGKILL after 5 s).",
                "",
                "Example: gmem qemu restore vm.snap -- qemu-system-x86_64 -accel kvm -nodefaults -nographic -serial stdio"
            })
    static final class RestoreQemu implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE", description = "A snapshot written by gmem qemu snapshot.")
        Path snapshot;

        @Parameters(
                index = "1..*",
                paramLabel = "QEMU_COMMAND",
                description = "After '--': the QEMU program and its arguments.")
        List<String> command;

        @Option(
                names = "--ram-dir",
                paramLabel = "DIR",
                description =
                        "Restore RAM into a file in DIR (a tmpfs) instead of a memfd; its name is removed once QEMU"
                                + " holds it open.")
        Path ramDir;

        @Option(names = "--force", description = "Restore a snapshot whose device state is from another QEMU version.")
        boolean force;

        @Option(
                names = "--qmp",
                paramLabel = "SOCKET",
                description = "Where QEMU's QMP socket goes (default: a new private directory).")
        Path qmp;

        @CommandLine.Mixin
        QemuTimeout timeout;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (command == null || command.isEmpty())
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "give the QEMU command after '--', the program first");
            QemuRestore.Running running;
            try {
                running = QemuRestore.start(
                        snapshot,
                        command,
                        new QemuRestore.Options(
                                ramDir,
                                force,
                                qmp,
                                QemuRestore.Stdio.INHERIT,
                                System.err,
                                SnapshotCommand.threads(),
                                timeout.duration()),
                        s -> {},
                        started -> Signals.onStop(signal -> {
                            // QEMU stopped and reaped, its RAM file and socket directory removed
                            started.close();
                            return signalStatus(signal);
                        }));
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
            }
            QemuRestore.Report r = running.report();
            PrintWriter err = spec.commandLine().getErr();
            if (json.on) err.println(Json.oneLine(r));
            else {
                QemuRestore.Phases p = r.phases();
                err.printf(
                        Locale.ROOT,
                        "gmem: QEMU %d runs from %s after %.0f ms: checks %.0f ms, RAM %s in %.0f ms (%s), QEMU start %.0f"
                                + " ms, device state %.0f ms, cont %.0f ms; QMP %s%n",
                        r.qemuPid(),
                        r.snapshot(),
                        p.totalMs(),
                        p.openMs(),
                        Sizes.format(r.ramDataBytes()),
                        p.ramMs(),
                        r.ramFile(),
                        p.qemuStartMs(),
                        p.deviceStateMs(),
                        p.contMs(),
                        r.qmpSocket());
            }
            err.flush();
            return running.waitFor();
        }
    }
}
