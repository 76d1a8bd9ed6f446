package dev.gmem.cli;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import dev.gmem.snapshot.Region;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotInfo;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(
        name = "snapshot",
        header = "Pack, unpack, inspect and verify gmem snapshots.",
        mixinStandardHelpOptions = true,
        description = {
            "gmem snapshots: pack a raw VMM memory file, unpack it again, inspect and verify.",
            "A snapshot stores only data pages (zero pages and holes cost nothing), in 1 MiB chunks each with its",
            "CRC32C, optionally compressed with zstd or lz4; its format is specified in docs/snapshot-format.md."
        },
        subcommands = {
            SnapshotCommand.Pack.class,
            SnapshotCommand.Unpack.class,
            SnapshotCommand.Inspect.class,
            SnapshotCommand.Verify.class,
            StoreCommands.Push.class,
            StoreCommands.Pull.class,
            StoreCommands.Ls.class,
            StoreCommands.Rm.class
        })
final class SnapshotCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    static int threads() {
        return Math.max(1, Math.min(4, Runtime.getRuntime().availableProcessors()));
    }

    /** {@code --compress}'s codec, or a usage error saying which are known. */
    static Codec codec(CommandLine cl, String compress) {
        try {
            return Codec.parse(compress);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, "--compress: " + e.getMessage());
        }
    }

    /** Parses --regions, or null when not given. */
    static List<Region> regions(CommandLine cl, String spec) {
        if (spec == null) return null;
        try {
            return Region.parse(spec, Region.MIN_PAGE);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, "--regions: " + e.getMessage());
        }
    }

    static final String REGIONS_HELP =
            "Guest regions of a raw file, laid end to end in it: GPA:SIZE[:PAGESIZE],... (example:"
                    + " 0:2G,0x100000000:1G). Default: one region at guest address 0 covering the file.";

    static final String FORMAT_HELP =
            "How to read the input: auto (by content: a gmem snapshot, a damaged one, which is refused, or else raw), raw or"
                    + " snapshot. Default ${DEFAULT-VALUE}.";

    static PageSources.Format format(CommandLine cl, String format) {
        try {
            return PageSources.Format.parse(format);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, "--format: " + e.getMessage());
        }
    }

    /** The input's size for a progress bar, after checking that it can be an input at all (with the reason if not). */
    static long inputSize(Path input) throws IOException {
        PageSources.checkInput(input);
        return Files.size(input);
    }

    @Command(
            name = "pack",
            header = "Pack a raw memory file (or repack a snapshot) into a gmem snapshot.",
            mixinStandardHelpOptions = true,
            description = {
                "Pack a raw memory file (or repack a snapshot) into a gmem snapshot. Holes are found with SEEK_DATA/SEEK_HOLE,",
                "zero pages by reading; neither is stored. The output appears under its name only when complete."
            })
    static final class Pack implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "INPUT", description = "A raw memory file or a gmem snapshot.")
        Path input;

        @Option(
                names = {"-o", "--output"},
                required = true,
                description = "The snapshot to write (replaced if it exists).")
        Path output;

        @Option(names = "--regions", description = REGIONS_HELP)
        String regions;

        @Option(names = "--format", defaultValue = "auto", description = FORMAT_HELP)
        String format;

        @Option(
                names = "--compress",
                defaultValue = "none",
                description =
                        "zstd, lz4 or none (default ${DEFAULT-VALUE}). A chunk that does not shrink is stored as it is.")
        String compress;

        @Option(
                names = "--access-order",
                paramLabel = "FILE",
                description =
                        "Record this page access order (one guest physical address per line, hex 0x… or decimal) for lazy restore to prefetch first.")
        Path accessOrder;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            Codec codec = SnapshotCommand.codec(spec.commandLine(), compress);
            if (input.toAbsolutePath()
                    .normalize()
                    .equals(output.toAbsolutePath().normalize())) {
                throw new CommandLine.ParameterException(spec.commandLine(), "the output must not be the input");
            }
            long[] order = accessOrder == null ? new long[0] : readAccessOrder(accessOrder);
            long t0 = System.nanoTime();
            SnapshotWriter.PackResult r;
            try (Progress line = new Progress(json.on);
                    PageSource source = PageSources.open(
                            input,
                            regions(spec.commandLine(), regions),
                            threads(),
                            new ByteProgress(line, "scan", inputSize(input)),
                            format(spec.commandLine(), format))) {
                checkOrder(source, order);
                // a snapshot packed again keeps what it carries besides guest memory
                var attachments =
                        source instanceof Snapshot s ? s.attachments() : new java.util.LinkedHashMap<String, byte[]>();
                r = SnapshotWriter.pack(
                        source, output, codec, order, attachments, new ByteProgress(line, "pack", source.size()));
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            var counts = r.manifest().counts();
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(new PackSummary(
                        input.toString(),
                        output.toString(),
                        codec.label(),
                        r.manifest().size(),
                        counts.dataPages(),
                        counts.zeroPages(),
                        counts.holePages(),
                        counts.storedBytes(),
                        r.fileSize(),
                        ms,
                        r.manifest().size() / (ms / 1e3) / (1L << 30))));
            } else {
                out.printf(
                        Locale.ROOT,
                        "packed %s into %s in %.0f ms (%.2f GiB/s of guest memory)%n",
                        input,
                        output,
                        ms,
                        r.manifest().size() / (ms / 1e3) / (1L << 30));
                out.printf(
                        Locale.ROOT,
                        "  %s guest memory: %d data, %d zero, %d hole pages; %s stored (%s), file %s%n",
                        Sizes.format(r.manifest().size()),
                        counts.dataPages(),
                        counts.zeroPages(),
                        counts.holePages(),
                        Sizes.format(counts.storedBytes()),
                        codec.label(),
                        Sizes.format(r.fileSize()));
            }
            out.flush();
            return 0;
        }
    }

    record PackSummary(
            String input,
            String output,
            String compression,
            long guestBytes,
            long dataPages,
            long zeroPages,
            long holePages,
            long storedBytes,
            long fileSize,
            double elapsedMs,
            double gibPerS) {}

    static long[] readAccessOrder(Path file) throws IOException {
        PageSources.checkInput(file);
        List<String> lines;
        try {
            lines = Files.readAllLines(file);
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new IOException(
                    file + ": not text; an access order is one guest physical address per line (hex 0x... or decimal)");
        }
        long[] out = new long[lines.size()];
        int n = 0;
        for (int i = 0; i < lines.size(); i++) {
            String l = lines.get(i).strip();
            if (l.isEmpty() || l.startsWith("#")) continue;
            try {
                out[n++] = l.toLowerCase(Locale.ROOT).startsWith("0x")
                        ? Long.parseUnsignedLong(l.substring(2), 16)
                        : Long.parseLong(l);
            } catch (NumberFormatException e) {
                throw new IOException(file + ":" + (i + 1) + ": '" + l + "' is not a guest physical address");
            }
        }
        return java.util.Arrays.copyOf(out, n);
    }

    static void checkOrder(PageSource source, long[] order) throws IOException {
        for (int i = 0; i < order.length; i++) {
            long a = order[i];
            boolean ok = false;
            for (Region r : source.regions()) ok |= r.containsGuest(a) && (a - r.guestAddress()) % r.pageSize() == 0;
            if (!ok)
                throw new IOException("access order entry " + i + ": 0x" + Long.toHexString(a)
                        + " is not the address of a page in " + source.name());
        }
    }

    @Command(
            name = "unpack",
            header = "Write a snapshot back as a sparse raw memory file.",
            mixinStandardHelpOptions = true,
            description = {
                "Write a snapshot back as a raw memory file: regions end to end, sparse (zero pages and holes are left as holes),",
                "byte for byte the packed input. Every checksum is checked first."
            })
    static final class Unpack implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "SNAPSHOT")
        Path input;

        @Option(
                names = {"-o", "--output"},
                required = true,
                description = "The raw file to write (replaced if it exists).")
        Path output;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            long t0 = System.nanoTime();
            long written;
            long size;
            try (Progress line = new Progress(json.on);
                    Snapshot s = Snapshot.open(input)) {
                size = s.size();
                written = SnapshotWriter.unpack(s, output, threads(), new ByteProgress(line, "unpack", s.size()));
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(new UnpackSummary(input.toString(), output.toString(), size, written, ms)));
            } else {
                out.printf(
                        Locale.ROOT,
                        "unpacked %s into %s: %s, %s of data written, in %.0f ms%n",
                        input,
                        output,
                        Sizes.format(size),
                        Sizes.format(written),
                        ms);
            }
            out.flush();
            return 0;
        }
    }

    record UnpackSummary(String input, String output, long size, long dataBytes, double elapsedMs) {}

    @Command(
            name = "inspect",
            header = "Show a snapshot's regions, page counts, chunks and compression ratio.",
            mixinStandardHelpOptions = true,
            description =
                    "Show a snapshot's regions, page counts by kind, chunks and compression ratio (reads the manifest only).")
    static final class Inspect implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "SNAPSHOT")
        Path input;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            SnapshotInfo i;
            try (Snapshot s = Snapshot.open(input)) {
                i = SnapshotInfo.of(s);
            }
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(i));
            } else {
                out.printf(
                        Locale.ROOT,
                        "snapshot %s: format version %d, %s on disk, %s of guest memory%n",
                        i.path(),
                        i.formatVersion(),
                        Sizes.format(i.fileSize()),
                        Sizes.format(i.guestBytes()));
                out.printf("%-6s %-20s %-20s %10s %10s%n", "region", "guest start", "guest end", "size", "page");
                for (SnapshotInfo.RegionInfo r : i.regions()) {
                    out.printf(
                            Locale.ROOT,
                            "%-6d 0x%-18x 0x%-18x %10s %10s%n",
                            r.index(),
                            r.guestAddress(),
                            r.guestAddress() + r.size(),
                            Sizes.format(r.size()),
                            Sizes.format(r.pageSize()));
                }
                out.printf(
                        Locale.ROOT,
                        "pages: %d (data %d, zero %d, hole %d)%n",
                        i.pages(),
                        i.dataPages(),
                        i.zeroPages(),
                        i.holePages());
                out.printf(
                        Locale.ROOT,
                        "data: %s in %d chunks of up to %s %s; stored %s, compression ratio %.2f%n",
                        Sizes.format(i.dataBytes()),
                        i.chunks(),
                        Sizes.format(i.chunkBytes()),
                        i.chunksByCodec(),
                        Sizes.format(i.storedBytes()),
                        i.compressionRatio());
                out.printf(
                        "checksums: CRC32C per chunk; access order: %s%n",
                        i.accessOrderPages() == 0 ? "none recorded" : i.accessOrderPages() + " pages");
                if (!i.attachments().isEmpty()) {
                    out.println("attachments: "
                            + String.join(
                                    ", ",
                                    i.attachments().stream()
                                            .map(a -> a.name() + " (" + Sizes.format(a.bytes()) + ")")
                                            .toList()));
                }
            }
            out.flush();
            return 0;
        }
    }

    @Command(
            name = "verify",
            header = "Check a snapshot completely, every chunk's checksum included.",
            mixinStandardHelpOptions = true,
            description =
                    "Check a snapshot completely: header, manifest, every chunk's checksum, and that every compressed chunk decodes. Exit 0 when sound, 4 with the first problem.")
    static final class Verify implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "SNAPSHOT")
        Path input;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            long t0 = System.nanoTime();
            long chunks;
            long stored;
            try (Progress line = new Progress(json.on);
                    Snapshot s = Snapshot.open(input)) {
                chunks = s.chunks().size();
                stored = s.counts().storedBytes();
                s.verifyDeep(threads(), new ByteProgress(line, "verify", stored));
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(new VerifySummary(input.toString(), true, chunks, stored, ms)));
            } else {
                out.printf(
                        Locale.ROOT,
                        "%s: ok, %d chunks, %s checked in %.0f ms%n",
                        input,
                        chunks,
                        Sizes.format(stored),
                        ms);
            }
            out.flush();
            return 0;
        }
    }

    record VerifySummary(String path, boolean ok, long chunks, long storedBytes, double elapsedMs) {}
}
