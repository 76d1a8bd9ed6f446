package dev.gmem.cli;

import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.Strategy;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(
        name = "restore",
        mixinStandardHelpOptions = true,
        description = {
            "Restore a gmem snapshot or a raw VMM memory file into a new guest memory file, eagerly: every data page in",
            "place before it returns. Checksums are checked first, so a corrupt snapshot writes nothing. The population",
            "strategy is chosen for this host (see 'gmem bench populate'); zero pages and holes cost nothing.",
            "",
            "The guest memory is released when the command ends unless --export names a file for a VMM to map."
        })
final class RestoreCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "SNAPSHOT|RAW", description = "A gmem snapshot, or a raw memory file (detected by content).")
    Path input;

    @Option(names = "--backend", defaultValue = "memfd", description = "kernel (a KVM guest_memfd) or memfd (default ${DEFAULT-VALUE}).")
    String backend;

    @Option(names = "--regions", description = SnapshotCommand.REGIONS_HELP)
    String regions;

    @Option(names = "--strategy", description = "Force a population strategy (mapped-copy, populate-copy, write, thp-copy) instead of the chosen one.")
    String strategy;

    @Option(names = "--threads", description = "Threads for a forced strategy (default 1).")
    int threads;

    @Option(names = "--verify", description = "Afterwards, check every page of guest memory against the source.")
    boolean verify;

    @Option(names = "--export", paramLabel = "PATH", description = "Restore into a new file at PATH (on tmpfs, such as /dev/shm) that a VMM maps, as QEMU's"
            + " memory-backend-file does; it appears under PATH only once the restore succeeded. memfd backend only.")
    Path export;

    @Option(names = "--json", description = "Print the summary as JSON.")
    boolean json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        GuestMemory.Backend b = switch (backend.toLowerCase(Locale.ROOT)) {
            case "kernel" -> GuestMemory.Backend.KERNEL;
            case "memfd" -> GuestMemory.Backend.MEMFD;
            default -> throw new CommandLine.ParameterException(spec.commandLine(), "--backend must be kernel or memfd, not '" + backend + "'");
        };
        if (export != null && b != GuestMemory.Backend.MEMFD) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--export needs the memfd backend: a KVM guest_memfd has no path to export");
        }
        Strategy forced = null;
        if (strategy != null) {
            try {
                forced = Strategy.parse(strategy);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
            }
        }
        if (threads < 0 || threads > 256) throw new CommandLine.ParameterException(spec.commandLine(), "--threads must be between 1 and 256");
        EagerRestore.Report report;
        try (Progress line = new Progress(json);
                PageSource source = PageSources.open(input, SnapshotCommand.regions(spec.commandLine(), regions), SnapshotCommand.threads(),
                        new ByteProgress(line, "scan", Files.size(input)));
                Destination dst = export == null ? Destination.anonymous(b, source.size()) : Destination.export(export, source.size())) {
            report = EagerRestore.restore(source, dst.memory(), new EagerRestore.Options(forced, threads, verify),
                    new ByteProgress(line, "restore", source.counts().dataBytes()));
            dst.commit();
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json) {
            out.println(Json.write(new Summary(report, export == null ? null : export.toString())));
        } else {
            print(out, report);
            if (export != null) out.printf("exported to %s%n", export);
        }
        out.flush();
        return 0;
    }

    record Summary(@com.fasterxml.jackson.annotation.JsonUnwrapped EagerRestore.Report restore, String export) {}

    static void print(PrintWriter out, EagerRestore.Report r) {
        out.printf(Locale.ROOT, "restored %s (%s) into %s guest memory: %s, %s of data%n", r.source(), r.format(), r.backend(), Sizes.format(r.guestBytes()),
                Sizes.format(r.bytesRestored()));
        out.printf(Locale.ROOT, "  pages: %d data, %d zero, %d hole (zero pages and holes are not copied)%n", r.pages().data(), r.pages().zero(), r.pages().hole());
        out.printf(Locale.ROOT, "  strategy: %s on %d thread%s: %s%n", r.strategy(), r.threads(), r.threads() == 1 ? "" : "s", r.reason());
        out.printf(Locale.ROOT, "  checksums %.1f ms, population %.1f ms, total %.1f ms: %.2f GiB/s of data%n", r.checksumMs(), r.populateMs(), r.elapsedMs(), r.gibPerS());
        if (r.verified() != null) out.printf(Locale.ROOT, "  verified: every page matches the source (%.1f ms)%n", r.verifyMs());
    }
}
