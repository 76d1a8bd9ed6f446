package dev.gmem.cli;

import dev.gmem.snapshot.ImageSynth;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "image",
        header = "Write synthetic guest memory images.",
        mixinStandardHelpOptions = true,
        description = "Synthetic guest memory images.",
        subcommands = ImageCommand.Synth.class)
final class ImageCommand implements Runnable {
    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(spec.commandLine().getOut());
    }

    @Command(
            name = "synth",
            header = "Write a deterministic synthetic raw guest memory image.",
            mixinStandardHelpOptions = true,
            description = {
                "Write a deterministic synthetic raw guest memory image: the same options and seed give the same bytes.",
                "Pages come in 64 KiB runs of one kind: holes (never written; the file is sparse there), zero pages,",
                "duplicates of a few template pages, and data (60%% text-like, 40%% random)."
            })
    static final class Synth implements Callable<Integer> {
        @Option(
                names = "--size",
                defaultValue = "512M",
                converter = Sizes.class,
                description = "Image size, a multiple of 4096 (default ${DEFAULT-VALUE}).")
        long size;

        @Option(
                names = "--zero",
                defaultValue = "40%",
                converter = Percent.class,
                description = "Share of zero pages (default ${DEFAULT-VALUE}).")
        double zero;

        @Option(
                names = "--dup",
                defaultValue = "10%",
                converter = Percent.class,
                description = "Share of duplicated pages (default ${DEFAULT-VALUE}).")
        double dup;

        @Option(
                names = "--hole",
                defaultValue = "20%",
                converter = Percent.class,
                description = "Share of holes (default ${DEFAULT-VALUE}).")
        double hole;

        @Option(names = "--seed", defaultValue = "1", description = "Seed (default ${DEFAULT-VALUE}).")
        long seed;

        @Option(
                names = {"-o", "--output"},
                required = true,
                description = "The image file to write (replaced if it exists).")
        Path output;

        @CommandLine.Mixin
        Options.Json json;

        @CommandLine.Spec
        CommandLine.Model.CommandSpec spec;

        @Override
        public Integer call() throws Exception {
            if (size <= 0 || size % 4096 != 0)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--size must be a positive multiple of 4096");
            ImageSynth.Mix mix;
            try {
                mix = new ImageSynth.Mix(hole, zero, dup);
            } catch (IllegalArgumentException e) {
                throw new CommandLine.ParameterException(spec.commandLine(), e.getMessage());
            }
            ImageSynth.Result r;
            long t0 = System.nanoTime();
            try (Progress line = new Progress(json.on)) {
                r = ImageSynth.generate(
                        output,
                        size,
                        mix,
                        seed,
                        Runtime.getRuntime().availableProcessors(),
                        new ByteProgress(line, "synth", size));
            }
            double ms = (System.nanoTime() - t0) / 1e6;
            PrintWriter out = spec.commandLine().getOut();
            if (json.on) {
                out.println(Json.write(r));
            } else {
                long pages = size / 4096;
                out.printf(Locale.ROOT, "wrote %s: %s, %d pages in %.0f ms%n", output, Sizes.format(size), pages, ms);
                out.printf(
                        Locale.ROOT,
                        "  hole %d, zero %d, duplicate %d, text %d, random %d%n",
                        r.holePages(),
                        r.zeroPages(),
                        r.duplicatePages(),
                        r.textPages(),
                        r.randomPages());
            }
            out.flush();
            return 0;
        }
    }
}
