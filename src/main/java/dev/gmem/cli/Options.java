package dev.gmem.cli;

import java.nio.file.Path;
import picocli.CommandLine.Option;

/** The options several commands share, each declared once as a picocli mixin. */
final class Options {
    private Options() {}

    /** A usage error unless {@code min <= value <= max}: "OPTION must be between MIN and MAX[ UNIT]". */
    static void within(picocli.CommandLine cl, String option, long value, long min, long max, String unit) {
        if (value < min || value > max)
            throw new picocli.CommandLine.ParameterException(
                    cl, option + " must be between " + min + " and " + max + (unit.isEmpty() ? "" : " " + unit));
    }

    /** {@code --warm}: memory touched once before timing, as the benchmarks need on a VM that returns free memory to its host. */
    static final class Warm {
        @Option(
                names = "--warm",
                converter = Sizes.class,
                description =
                        "Memory to touch once before timing (default: 80%% of the available memory, since the first touch"
                                + " of never-used RAM is several times slower on virtual machines; 0 skips it).")
        Long warm;

        /** The bytes to touch; -1 for the default. */
        long bytes() {
            return warm == null ? -1 : warm;
        }
    }

    /** {@code --dir}: where a command's working files go, in a directory of its own that it removes. */
    static final class WorkDir {
        @Option(
                names = "--dir",
                description =
                        "Where the working files go (default: /dev/shm, a tmpfs, so that disk writeback is not measured;"
                                + " else the temporary directory). They are removed afterwards.")
        Path dir;

        Path resolve() {
            return BenchCommand.workDir(dir);
        }
    }

    /** {@code --json}: the command's output as one JSON document, for tools (keys in snake_case; see each command's docs). */
    static final class Json {
        @Option(names = "--json", description = "Print the output as one JSON document, for tools.")
        boolean on;
    }
}
