package dev.gmem.cli;

import dev.gmem.util.OutputFile;
import java.io.OutputStream;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.List;

/**
 * The training run of gmem's ahead-of-time cache (JDK 25's {@code -XX:AOTCacheOutput}): runs
 * gmem's usual commands once each, in this JVM, on a small synthetic guest in a scratch directory
 * of its own, so that the cache holds the classes they load and link and the profiles of the
 * methods they run. The launcher runs it after each build; a command that fails here (no
 * userfaultfd, say) only leaves its path out of the cache. Prints nothing; removes what it wrote.
 */
public final class AotTraining {
    private AotTraining() {}

    public static void main(String[] args) throws Exception {
        Signals.install(); // as every run does: its classes belong in the cache too
        Path work = OutputFile.scratchDirectory(
                Path.of(args.length > 0 ? args[0] : System.getProperty("java.io.tmpdir")), "gmem-aot-training-");
        try {
            String raw = work.resolve("guest.raw").toString();
            String snap = work.resolve("guest.snap").toString();
            String qemuSnap = work.resolve("qemu.snap").toString();
            List<String[]> commands = List.of(
                    new String[] {"--version"},
                    new String[] {"--help"},
                    new String[] {"probe", "--json"},
                    new String[] {"image", "synth", "--size", "64M", "--hole", "50%", "-o", raw},
                    new String[] {"snapshot", "pack", raw, "-o", snap},
                    new String[] {"snapshot", "inspect", snap, "--json"},
                    new String[] {"snapshot", "verify", snap},
                    new String[] {"restore", snap},
                    new String[] {"restore", snap, "--json", "--verify"},
                    new String[] {
                        "restore", raw, "--export", work.resolve("guest.mem").toString()
                    },
                    new String[] {
                        "restore",
                        snap,
                        "--mode",
                        "lazy",
                        "--verify",
                        "--trace",
                        work.resolve("t.trace").toString()
                    },
                    new String[] {
                        "report",
                        work.resolve("t.trace").toString(),
                        "-o",
                        work.resolve("t.svg").toString()
                    },
                    new String[] {
                        "snapshot",
                        "unpack",
                        snap,
                        "-o",
                        work.resolve("back.raw").toString()
                    },
                    new String[] {"restore", work.resolve("missing.snap").toString()},
                    // a QEMU restore up to QEMU's start; the "QEMU" here exits at once, as no QEMU is needed to train
                    new String[] {"qemu", "restore", qemuSnap, "--timeout", "2", "--", "/bin/false", "-machine", "q35"
                    });
            Runnable qemuSnapshot = () -> {
                try (var image = dev.gmem.snapshot.RawImage.open(Path.of(raw), null, 1, b -> {})) {
                    var attachments = new java.util.LinkedHashMap<String, byte[]>();
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
                                            java.util.List.of("q35"))
                                    .toText());
                    attachments.put(dev.gmem.qemu.QemuMeta.DEVICE_STATE, new byte[1]);
                    dev.gmem.snapshot.SnapshotWriter.pack(
                            image, Path.of(qemuSnap), dev.gmem.snapshot.Codec.NONE, new long[0], attachments, b -> {});
                } catch (java.io.IOException e) {
                    // its command then fails early, and trains less
                }
            };
            PrintWriter quiet = new PrintWriter(OutputStream.nullOutputStream());
            for (String[] c : commands) {
                if (c[0].equals("qemu")) qemuSnapshot.run();
                picocli.CommandLine cl = Main.commandLine(c);
                cl.setOut(quiet);
                cl.setErr(quiet);
                cl.execute(c);
            }
        } finally {
            OutputFile.removeScratch(work);
        }
    }
}
