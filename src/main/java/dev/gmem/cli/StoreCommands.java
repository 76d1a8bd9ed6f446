package dev.gmem.cli;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import dev.gmem.store.S3Location;
import dev.gmem.store.Store;
import dev.gmem.store.StoreGc;
import dev.gmem.store.StorePush;
import dev.gmem.store.StoreSource;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** The snapshot commands on a store at an s3:// URL (push, pull, ls, rm), and {@code gmem store gc}. */
final class StoreCommands {
    private StoreCommands() {}

    @Command(
            name = "push",
            header = "Push a snapshot or raw memory file into a store at s3://BUCKET/PREFIX/NAME.",
            mixinStandardHelpOptions = true,
            description = {
                "Each 1 MiB window's data pages become one content-addressed object (named by the SHA-256 of its stored",
                "bytes), uploaded only when the store lacks it. With --base, only the pages whose hash differs from the",
                "base's page at the same place are stored; the rest are taken from the base's objects. Zero pages and",
                "holes are never stored. The manifest goes last: a push cut short leaves no snapshot. See docs/store.md."
            })
    static final class Push implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "FILE", description = "A gmem snapshot or a raw memory file.")
        Path input;

        @Parameters(index = "1", paramLabel = "s3://BUCKET/PREFIX/NAME", description = "Where the snapshot goes.")
        String target;

        @Option(
                names = "--base",
                paramLabel = "s3://BUCKET/PREFIX/NAME",
                description = "A snapshot of the same store to store only the differences from.")
        String base;

        @Option(
                names = "--compress",
                defaultValue = "lz4",
                description = "none, lz4 or zstd, per object (default ${DEFAULT-VALUE}).")
        String compress;

        @CommandLine.Mixin
        StoreOptions store;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            S3Location to = StoreOptions.parse(spec.commandLine(), "the target", target);
            if (to.name() == null)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "the target names a store, not a snapshot: end it with a NAME");
            S3Location from = base == null ? null : StoreOptions.parse(spec.commandLine(), "--base", base);
            Codec codec = SnapshotCommand.codec(spec.commandLine(), compress);
            StorePush.Report r;
            try (Progress line = new Progress(json.on);
                    Store s = store.open(spec.commandLine(), to);
                    PageSource source = PageSources.open(
                            input, null, SnapshotCommand.threads(), b -> {}, PageSources.Format.AUTO)) {
                var attachments =
                        source instanceof Snapshot snap ? snap.attachments() : new LinkedHashMap<String, byte[]>();
                r = StorePush.push(
                        s, source, to, from, codec, attachments, 8, new ByteProgress(line, "push", source.size()));
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) out.println(Json.write(r));
            else
                out.printf(
                        Locale.ROOT,
                        "pushed %s to %s in %.0f ms: %s of data, %d objects (%d uploaded, %s), %d pages from the base%s%n",
                        input,
                        r.target(),
                        r.elapsedMs(),
                        Sizes.format(r.dataBytes()),
                        r.objects(),
                        r.objectsUploaded(),
                        Sizes.format(r.bytesUploaded()),
                        r.pagesFromBase(),
                        r.base() == null ? "" : " (" + r.base() + ")");
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "pull",
            header = "Pull a snapshot from a store into a local gmem snapshot file.",
            mixinStandardHelpOptions = true,
            description =
                    "Every object is checked against the size and CRC32C its manifest names before it is written; the file appears only when complete.")
    static final class Pull implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "s3://BUCKET/PREFIX/NAME")
        String source;

        @Option(
                names = {"-o", "--output"},
                required = true,
                paramLabel = "FILE")
        Path output;

        @Option(
                names = "--compress",
                defaultValue = "none",
                description = "The local file's codec (default ${DEFAULT-VALUE}).")
        String compress;

        @CommandLine.Mixin
        StoreOptions store;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        record Pulled(
                String source, String output, long fileBytes, long guestBytes, long dataBytes, double elapsedMs) {}

        @Override
        public Integer call() throws Exception {
            S3Location from = StoreOptions.parse(spec.commandLine(), "the source", source);
            Codec codec = SnapshotCommand.codec(spec.commandLine(), compress);
            long t0 = System.nanoTime();
            SnapshotWriter.PackResult r;
            try (Progress line = new Progress(json.on);
                    Store s = store.open(spec.commandLine(), from);
                    StoreSource src = StoreSource.open(s, from)) {
                r = SnapshotWriter.pack(
                        src,
                        output,
                        codec,
                        src.accessOrder(),
                        src.attachments(),
                        new ByteProgress(line, "pull", src.size()));
            }
            Pulled p = new Pulled(
                    from.toString(),
                    output.toString(),
                    r.fileSize(),
                    r.manifest().size(),
                    r.manifest().counts().dataBytes(),
                    (System.nanoTime() - t0) / 1e6);
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) out.println(Json.write(p));
            else
                out.printf(
                        Locale.ROOT,
                        "pulled %s into %s in %.0f ms: %s of data, %s on disk%n",
                        p.source(),
                        p.output(),
                        p.elapsedMs(),
                        Sizes.format(p.dataBytes()),
                        Sizes.format(p.fileBytes()));
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "ls",
            header = "List the snapshots of a store at s3://BUCKET/PREFIX/.",
            mixinStandardHelpOptions = true)
    static final class Ls implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "s3://BUCKET/PREFIX/")
        String storeUrl;

        @CommandLine.Mixin
        StoreOptions store;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        record Listed(String name, long manifestBytes, String lastModified) {}

        @Override
        public Integer call() throws Exception {
            S3Location at = StoreOptions.parseStore(spec.commandLine(), storeUrl);
            List<Listed> out;
            try (Store s = store.open(spec.commandLine(), at)) {
                out = s.snapshots().stream()
                        .map(o -> new Listed(
                                o.key().substring(at.manifestsPrefix().length()),
                                o.size(),
                                o.lastModified().toString()))
                        .toList();
            }
            PrintWriter w = spec.commandLine().getOut();
            if (json.on) w.println(Json.write(out));
            else
                for (Listed l : out)
                    w.printf(
                            Locale.ROOT,
                            "%-40s %10s  %s%n",
                            l.name(),
                            Sizes.format(l.manifestBytes()),
                            l.lastModified());
            w.flush();
            return 0;
        }
    }

    @Command(
            name = "rm",
            header =
                    "Remove a snapshot from a store (its manifest; gmem store gc removes the objects no snapshot names).",
            mixinStandardHelpOptions = true)
    static final class Rm implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "s3://BUCKET/PREFIX/NAME")
        String target;

        @CommandLine.Mixin
        StoreOptions store;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            S3Location at = StoreOptions.parse(spec.commandLine(), "the snapshot", target);
            if (at.name() == null)
                throw new CommandLine.ParameterException(spec.commandLine(), "name a snapshot, not a store");
            try (Store s = store.open(spec.commandLine(), at)) {
                s.manifest(at); // says so when there is no such snapshot
                s.client().delete(at.bucket(), List.of(at.manifestKey()));
            }
            spec.commandLine().getOut().println("removed " + at);
            spec.commandLine().getOut().flush();
            return 0;
        }
    }

    @Command(
            name = "store",
            header = "Look after a store of snapshots in S3-compatible object storage.",
            mixinStandardHelpOptions = true,
            subcommands = {StoreCommands.Gc.class})
    static final class StoreRoot implements Runnable {
        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public void run() {
            spec.commandLine().usage(spec.commandLine().getOut());
        }
    }

    @Command(
            name = "gc",
            header = "Remove the objects of a store that no snapshot names.",
            mixinStandardHelpOptions = true,
            description = {
                "Objects are listed first and the manifests read after; an unnamed object is removed only when older than",
                "--grace. A push rewrites every object it reuses that is older than half the grace onto itself (which",
                "makes it new) and writes its manifest last, so a concurrent push loses nothing, as long as it takes",
                "less than half the grace."
            })
    static final class Gc implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "s3://BUCKET/PREFIX/")
        String storeUrl;

        @Option(
                names = "--grace",
                defaultValue = "60",
                paramLabel = "MINUTES",
                description =
                        "Keep unnamed objects younger than this (default ${DEFAULT-VALUE}; 0 only when nothing pushes meanwhile).")
        long graceMinutes;

        @Option(names = "--dry-run", description = "Say what would go, and remove nothing.")
        boolean dryRun;

        @CommandLine.Mixin
        StoreOptions store;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            S3Location at = StoreOptions.parseStore(spec.commandLine(), storeUrl);
            if (graceMinutes != 0
                    && graceMinutes < StoreGc.TOUCH_AFTER.multipliedBy(2).toMinutes())
                throw new CommandLine.ParameterException(
                        spec.commandLine(),
                        "--grace: at least "
                                + StoreGc.TOUCH_AFTER.multipliedBy(2).toMinutes()
                                + " minutes, or 0 when nothing pushes meanwhile");
            StoreGc.Report r;
            try (Store s = store.open(spec.commandLine(), at)) {
                r = StoreGc.run(s, Duration.ofMinutes(graceMinutes), dryRun);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) out.println(Json.write(r));
            else
                out.printf(
                        Locale.ROOT,
                        "%s: %d snapshots, %d objects; %s %d unnamed (%s); %d unnamed but younger than the grace kept%n",
                        at,
                        r.snapshots(),
                        r.objects(),
                        dryRun ? "would remove" : "removed",
                        r.removed(),
                        Sizes.format(r.removedBytes()),
                        r.youngKept());
            out.flush();
            return 0;
        }
    }
}
