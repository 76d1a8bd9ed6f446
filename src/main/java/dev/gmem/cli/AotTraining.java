package dev.gmem.cli;

import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The training runs of gmem's ahead-of-time caches (JDK 25's {@code -XX:AOTCacheOutput}). A JVM
 * started with a cache loads every class the cache holds before {@code main}, used or not: a cache
 * of every command's classes cost {@code gmem --version} about 18 ms more than a cache of its own
 * (docs/benchmarks.md, start time). So each command whose start matters has a cache of its own,
 * trained on that command alone, and {@value #ALL} (every command's runs) serves the others.
 *
 * <p>The launcher runs, after each build:
 *
 * <ul>
 *   <li>{@code AotTraining --families}: prints the families' names, one per line;
 *   <li>{@code AotTraining --prepare DIR} without a cache: writes the inputs the runs read (a
 *       small synthetic guest, its snapshot, a trace, a QEMU snapshot) into {@code DIR}, so that
 *       the classes that make them are not in the caches of commands that only read them;
 *   <li>{@code AotTraining FAMILY DIR}, once per family with {@code -XX:AOTCacheOutput}: runs the
 *       family's commands on those inputs, in this JVM, so that its cache holds the classes they
 *       load and link and the profiles of the methods they run.
 * </ul>
 *
 * A command that fails here (no userfaultfd, say) only leaves its path out of the cache. Prints
 * the families for {@code --families}, and otherwise only errors.
 */
public final class AotTraining {
    private AotTraining() {}

    /** The family of every command's runs: the cache of commands without a family of their own. */
    static final String ALL = "all";

    /** The family of {@code gmem --version}, {@code gmem --help} and a bare {@code gmem}. */
    static final String MAIN = "main";

    /** The directory, inside the inputs', where the runs write their outputs. */
    private static final String OUTPUTS = "out";

    /**
     * The training's command lines, by family. A family's name is its command's, or {@value #MAIN}
     * for the top level, or {@code restore-lazy} for a lazy restore: the launcher's
     * {@code build/aot-family.sh} names the family of a command line, and a test holds each of
     * these command lines to its family there.
     */
    static Map<String, List<String[]>> families(Path dir) {
        String raw = dir.resolve("guest.raw").toString();
        String snap = dir.resolve("guest.snap").toString();
        // what the runs write: emptied before each family's runs, which write the same names again
        Path out = dir.resolve(OUTPUTS);
        Map<String, List<String[]>> f = new LinkedHashMap<>();
        f.put(MAIN, List.of(new String[] {"--version"}, new String[] {"--help"}));
        f.put("probe", List.<String[]>of(new String[] {"probe", "--json"}));
        f.put("image", List.<String[]>of(new String[] {
            "image",
            "synth",
            "--size",
            "64M",
            "--hole",
            "50%",
            "-o",
            out.resolve("synth.raw").toString()
        }));
        f.put(
                "snapshot",
                List.of(
                        new String[] {
                            "snapshot",
                            "pack",
                            raw,
                            "-o",
                            out.resolve("pack.snap").toString()
                        },
                        new String[] {"snapshot", "inspect", snap, "--json"},
                        new String[] {"snapshot", "verify", snap},
                        new String[] {
                            "snapshot",
                            "unpack",
                            snap,
                            "-o",
                            out.resolve("back.raw").toString()
                        }));
        f.put(
                "restore",
                List.of(
                        new String[] {"restore", snap},
                        new String[] {"restore", snap, "--json", "--verify"},
                        new String[] {
                            "restore", raw, "--export", out.resolve("guest.mem").toString()
                        },
                        new String[] {"restore", dir.resolve("missing.snap").toString()}));
        f.put("restore-lazy", List.<String[]>of(new String[] {
            "restore",
            snap,
            "--mode",
            "lazy",
            "--verify",
            "--trace",
            out.resolve("lazy.trace").toString()
        }));
        f.put("report", List.<String[]>of(new String[] {
            "report",
            dir.resolve("t.trace").toString(),
            "-o",
            out.resolve("t.svg").toString()
        }));
        // a QEMU restore up to QEMU's start; the "QEMU" here exits at once, as no QEMU is needed to train
        f.put("qemu", List.<String[]>of(new String[] {
            "qemu",
            "restore",
            dir.resolve("qemu.snap").toString(),
            "--timeout",
            "2",
            "--",
            "/bin/false",
            "-machine",
            "q35"
        }));
        List<String[]> all = new ArrayList<>();
        f.values().forEach(all::addAll);
        f.put(ALL, List.copyOf(all));
        return f;
    }

    public static void main(String[] args) throws Exception {
        if (args.length == 1 && args[0].equals("--families")) {
            families(Path.of(".")).keySet().forEach(System.out::println);
            return;
        }
        if (args.length != 2) {
            System.err.println("usage: AotTraining --families | --prepare DIR | FAMILY DIR");
            System.exit(2);
        }
        Path dir = Path.of(args[1]);
        if (args[0].equals("--prepare")) {
            prepare(dir);
            return;
        }
        List<String[]> commands = families(dir).get(args[0]);
        if (commands == null) {
            System.err.println("AotTraining: no training family " + args[0] + "; see --families");
            System.exit(2);
        }
        emptyDirectory(dir.resolve(OUTPUTS));
        Signals.install(); // as every run does: its classes belong in the cache too
        runQuietly(commands);
    }

    /** Makes {@code d} an empty directory: the files an earlier family's runs left in it are removed. */
    private static void emptyDirectory(Path d) throws IOException {
        Files.createDirectories(d);
        try (var files = Files.list(d)) {
            for (Path f : (Iterable<Path>) files::iterator) Files.delete(f);
        }
    }

    /** Runs each command line as {@code gmem} would, its output and errors discarded. */
    private static void runQuietly(List<String[]> commands) {
        PrintWriter quiet = new PrintWriter(OutputStream.nullOutputStream());
        for (String[] c : commands) {
            picocli.CommandLine cl = Main.commandLine(c);
            cl.setOut(quiet);
            cl.setErr(quiet);
            cl.execute(c);
        }
    }

    /**
     * Writes the runs' inputs into {@code dir}: a 64 MiB synthetic guest, its snapshot, a lazy
     * restore's trace and a QEMU snapshot of the guest. One that cannot be made (a lazy restore
     * without userfaultfd, say) leaves its reader's run to fail, which trains less.
     */
    private static void prepare(Path dir) throws IOException {
        Files.createDirectories(dir);
        Path raw = dir.resolve("guest.raw");
        Path snap = dir.resolve("guest.snap");
        List<String[]> inputs = List.of(
                new String[] {"image", "synth", "--size", "64M", "--hole", "50%", "-o", raw.toString()},
                new String[] {"snapshot", "pack", raw.toString(), "-o", snap.toString()},
                new String[] {
                    "restore",
                    snap.toString(),
                    "--mode",
                    "lazy",
                    "--trace",
                    dir.resolve("t.trace").toString()
                });
        runQuietly(inputs);
        if (!Files.isRegularFile(raw)) {
            System.err.println("AotTraining: no synthetic guest was made; the QEMU snapshot is left out");
            return;
        }
        try (var image = dev.gmem.snapshot.RawImage.open(raw, null, 1, b -> {})) {
            var attachments = new LinkedHashMap<String, byte[]>();
            attachments.put(
                    dev.gmem.qemu.QemuMeta.ATTACHMENT,
                    new dev.gmem.qemu.QemuMeta(
                                    "0.0.0",
                                    "",
                                    "pc-q35-0.0",
                                    "pc.ram",
                                    image.size(),
                                    "memory-backend-file",
                                    1,
                                    List.of("q35"))
                            .toText());
            attachments.put(dev.gmem.qemu.QemuMeta.DEVICE_STATE, new byte[1]);
            dev.gmem.snapshot.SnapshotWriter.pack(
                    image, dir.resolve("qemu.snap"), dev.gmem.snapshot.Codec.NONE, new long[0], attachments, b -> {});
        }
    }
}
