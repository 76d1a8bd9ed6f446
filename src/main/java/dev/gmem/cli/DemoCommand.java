package dev.gmem.cli;

import dev.gmem.demo.Demo;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "demo",
        header = "Run gmem's main job end to end on a synthetic guest, proving each restore with a KVM vCPU.",
        mixinStandardHelpOptions = true,
        description = {
            "gmem's main job in one command: synthesize a guest memory image, pack it into a snapshot, restore it eagerly",
            "with the baseline (mapped-copy) and with the strategy chosen for this host on each backend, then lazily in",
            "each userfaultfd mode, and prove every restore with a real KVM vCPU that reads one word per page and reports",
            "a checksum, compared with the snapshot's. During a lazy restore the vCPU runs at once, and its own faults are",
            "served by the fault engine. What this host cannot do is shown as skipped, with the reason.",
            "Exit status 1 when a guest check fails."
        })
final class DemoCommand implements Callable<Integer> {
    @Option(
            names = "--size",
            defaultValue = "512M",
            converter = Sizes.class,
            description = "Guest memory size (default ${DEFAULT-VALUE}).")
    long size;

    @Option(
            names = "--seed",
            defaultValue = "1",
            description = "Seed of the synthetic image (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(
            names = "--check-stride",
            defaultValue = "1",
            description = "The vCPU reads one page in this many (default ${DEFAULT-VALUE}: every page).")
    long stride;

    @CommandLine.Mixin
    Options.WorkDir dir;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() throws Exception {
        if (size <= 0 || size % (1 << 20) != 0)
            throw new CommandLine.ParameterException(spec.commandLine(), "--size must be a positive multiple of 1 MiB");
        if (stride < 1)
            throw new CommandLine.ParameterException(spec.commandLine(), "--check-stride must be at least 1");
        Path where = dir.resolve();
        Demo.Report r;
        try (Progress line = new Progress(json.on)) {
            r = Demo.run(new Demo.Options(size, where, seed, stride, Duration.ofMinutes(10)), (name, total) -> {
                line.accept(name + " ...");
                return total > 0 ? new ByteProgress(line, name, total) : b -> {};
            });
        }
        PrintWriter out = spec.commandLine().getOut();
        if (json.on) {
            out.println(Json.write(r));
        } else {
            out.printf(
                    Locale.ROOT,
                    "guest memory %s: %s of data, %d zero pages, %d holes; synthesized in %.0f ms, packed in %.0f ms into a %s snapshot%n%n",
                    Sizes.format(r.sizeBytes()),
                    Sizes.format(r.dataBytes()),
                    r.zeroPages(),
                    r.holePages(),
                    r.synthMs(),
                    r.packMs(),
                    Sizes.format(r.snapshotBytes()));
            out.printf(
                    "%-6s %-7s %-28s %10s %7s %8s %s%n",
                    "mode",
                    "backend",
                    "strategy",
                    "time ms",
                    "GiB/s",
                    "faults",
                    "guest check (a real vCPU reads every page)");
            for (Demo.Row x : r.rows()) {
                if (x.ms() == null) {
                    out.printf(
                            "%-6s %-7s %-28s %10s %7s %8s %s%n",
                            x.mode(), x.backend(), x.strategy() == null ? "-" : x.strategy(), "-", "-", "-", x.note());
                    continue;
                }
                String faults = x.faults() == null ? "-" : String.valueOf(x.faults());
                String check = x.guestCheck()
                        + (x.guestCheckMs() == null ? "" : String.format(Locale.ROOT, " in %.0f ms", x.guestCheckMs()))
                        + (x.vcpuFaults() == null ? "" : ", " + x.vcpuFaults() + " vCPU faults served");
                out.printf(
                        Locale.ROOT,
                        "%-6s %-7s %-28s %10.1f %7.2f %8s %s%n",
                        x.mode(),
                        x.backend(),
                        x.strategy(),
                        x.ms(),
                        x.gibPerS(),
                        faults,
                        check);
            }
            out.println();
            out.println(
                    "time: eager rows end to end (checksums and population); lazy rows until every data page is in place, while the vCPU ran.");
            out.println("GiB/s counts data bytes. Zero pages and holes are never copied.");
        }
        out.flush();
        return r.passed() ? 0 : 1;
    }
}
