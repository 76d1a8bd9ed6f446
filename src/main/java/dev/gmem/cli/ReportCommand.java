package dev.gmem.cli;

import dev.gmem.trace.Trace;
import dev.gmem.trace.TraceFile;
import dev.gmem.trace.TraceReport;
import dev.gmem.util.OutputFile;
import java.io.PrintWriter;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(
        name = "report",
        header = "Draw a restore's trace as a timeline picture.",
        mixinStandardHelpOptions = true,
        description = {
            "Draw a trace recorded with 'gmem restore --mode lazy --trace FILE' as one picture: guest memory in place",
            "over time by the path that put it there (the faulting page, fault-around, zero pages and holes by faults,",
            "the prefetcher), the moments the restore became ready and fully resident, and the distribution of fault",
            "service times. The output is SVG, or an HTML page holding it, by its name's ending (.svg, .html)."
        })
final class ReportCommand implements Callable<Integer> {
    @Parameters(index = "0", paramLabel = "TRACE", description = "A trace file.")
    Path input;

    @Option(
            names = {"-o", "--output"},
            required = true,
            description = "The picture to write: NAME.svg or NAME.html (replaced if it exists).")
    Path output;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** What was drawn. */
    record Drawn(
            String trace, String output, String what, int samples, long faults, double readyMs, double populatedMs) {}

    @Override
    public Integer call() throws Exception {
        String name = output.getFileName() == null
                ? ""
                : output.getFileName().toString().toLowerCase(Locale.ROOT);
        boolean html = name.endsWith(".html") || name.endsWith(".htm");
        if (!html && !name.endsWith(".svg")) {
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "-o must name a .svg or .html file, not '" + output + "'");
        }
        Trace t = TraceFile.read(input);
        String picture = html ? TraceReport.html(t) : TraceReport.svg(t);
        byte[] bytes = picture.getBytes(StandardCharsets.UTF_8);
        try (OutputFile out = OutputFile.create(output, OutputFile.Mode.REPLACE, 0644, input);
                Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(bytes.length);
            MemorySegment.copy(bytes, 0, seg, ValueLayout.JAVA_BYTE, 0, bytes.length);
            out.fd().pwriteFully(seg, 0);
            out.commit();
        }
        long faults = t.samples().isEmpty()
                ? 0
                : t.samples().get(t.samples().size() - 1).faults();
        Drawn d = new Drawn(
                input.toString(),
                output.toString(),
                t.what(),
                t.samples().size(),
                faults,
                t.readyMs(),
                t.populatedMs());
        PrintWriter out = spec.commandLine().getOut();
        if (json.on) out.println(Json.write(d));
        else
            out.printf(Locale.ROOT, "drew %s (%d samples, %d faults) into %s%n", t.what(), d.samples(), faults, output);
        out.flush();
        return 0;
    }
}
