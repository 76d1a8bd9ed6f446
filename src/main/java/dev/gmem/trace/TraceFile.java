package dev.gmem.trace;

import dev.gmem.util.JsonLine;
import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;

/**
 * The trace file, format {@code gmem-trace} version 1: JSON lines. The first line is the header
 * {@code {"format":"gmem-trace","version":1,"what":…,"page_size":…,"data_pages":…}}; then one line
 * per sample, {@code [ms, faults, fault_pages, fault_around_pages, zero_pages, prefetch_pages]}
 * (cumulative counts); the last line is the end record {@code {"end":true,"samples":N,
 * "ready_ms":…,"populated_ms":…,"latency_bounds_us":[…],"latency_counts":[…]}}. A file without its
 * end record was cut short, and is refused as such. Written through {@link OutputFile}: it
 * appears under its name only when complete.
 */
public final class TraceFile {
    public static final String FORMAT = "gmem-trace";
    public static final int VERSION = 1;

    private TraceFile() {}

    /**
     * The output a trace goes to, created now (so that a path that cannot be written is refused
     * before any work), never one of {@code inputs}; {@link #write} fills and commits it, and closing
     * it unwritten removes it.
     */
    public static OutputFile create(Path path, Path... inputs) throws IOException {
        return OutputFile.create(path, OutputFile.Mode.REPLACE, 0644, inputs);
    }

    /** Writes {@code t} into {@code out} (from {@link #create}) and commits it. */
    public static void write(Trace t, OutputFile out) throws IOException {
        StringBuilder b = new StringBuilder();
        Map<String, Object> header = new LinkedHashMap<>();
        header.put("format", FORMAT);
        header.put("version", VERSION);
        header.put("what", t.what());
        header.put("page_size", t.pageSize());
        header.put("data_pages", t.dataPages());
        b.append(JsonLine.write(header)).append('\n');
        for (Trace.Sample s : t.samples()) {
            b.append('[')
                    .append(s.ms())
                    .append(',')
                    .append(s.faults())
                    .append(',')
                    .append(s.faultPages())
                    .append(',')
                    .append(s.faultAroundPages())
                    .append(',')
                    .append(s.zeroPages())
                    .append(',')
                    .append(s.prefetchPages())
                    .append("]\n");
        }
        Map<String, Object> end = new LinkedHashMap<>();
        end.put("end", true);
        end.put("samples", t.samples().size());
        end.put("ready_ms", t.readyMs());
        end.put("populated_ms", t.populatedMs());
        end.put("latency_bounds_us", t.latencyBoundsUs());
        end.put("latency_counts", t.latencyCounts());
        b.append(JsonLine.write(end)).append('\n');
        byte[] bytes = b.toString().getBytes(StandardCharsets.UTF_8);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(Math.max(1, bytes.length));
            MemorySegment.copy(bytes, 0, seg, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, bytes.length);
            out.fd().pwriteFully(seg.asSlice(0, bytes.length), 0);
            out.commit();
        }
    }

    /** No line of a trace is longer: a file with a longer one is no trace, and is never read whole. */
    private static final int MAX_LINE = 64 << 10;

    /** Reads a trace, refusing anything but a whole version-1 gmem trace, in one line that says why. */
    public static Trace read(Path path) throws IOException {
        try (java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(
                Files.newInputStream(path),
                StandardCharsets.UTF_8.newDecoder().onMalformedInput(java.nio.charset.CodingErrorAction.REPORT)))) {
            return read(path, in);
        } catch (java.nio.charset.CharacterCodingException e) {
            throw new TraceFormatException(path, "not a gmem trace (not text)");
        }
    }

    private static Trace read(Path path, java.io.BufferedReader in) throws IOException {
        String first = line(path, in, 1);
        if (first == null) throw new TraceFormatException(path, "empty: not a gmem trace");
        JsonNode header = parse(path, first, 1);
        if (!header.isObject() || !FORMAT.equals(header.path("format").asString(""))) {
            throw new TraceFormatException(path, "not a gmem trace (its first line is no gmem-trace header)");
        }
        int version = header.path("version").asInt(-1);
        if (version != VERSION) {
            throw new TraceFormatException(
                    path, "a gmem trace of version " + version + "; this gmem reads version " + VERSION);
        }
        List<Trace.Sample> samples = new ArrayList<>();
        JsonNode end = null;
        int number = 1;
        for (String line; (line = line(path, in, ++number)) != null; ) {
            if (line.isBlank()) continue;
            if (end != null) throw new TraceFormatException(path, "line " + number + ": data after the end record");
            JsonNode n = parse(path, line, number);
            if (n.isObject() && n.path("end").asBoolean(false)) {
                end = n;
                continue;
            }
            if (!n.isArray() || n.size() != 6)
                throw new TraceFormatException(path, "line " + number + ": not a sample of 6 numbers");
            for (JsonNode x : n) {
                if (!x.isNumber() || x.asDouble() < 0)
                    throw new TraceFormatException(path, "line " + number + ": not a sample of 6 numbers at least 0");
            }
            samples.add(new Trace.Sample(
                    n.get(0).asDouble(),
                    n.get(1).asLong(),
                    n.get(2).asLong(),
                    n.get(3).asLong(),
                    n.get(4).asLong(),
                    n.get(5).asLong()));
        }
        if (end == null)
            throw new TraceFormatException(
                    path, "cut short after " + samples.size() + " samples: it has no end record");
        if (end.path("samples").asLong(-1) != samples.size()) {
            throw new TraceFormatException(
                    path,
                    "its end record counts " + end.path("samples").asLong(-1) + " samples, the file holds "
                            + samples.size());
        }
        List<Long> bounds = longs(path, end, "latency_bounds_us");
        List<Long> counts = longs(path, end, "latency_counts");
        if (bounds.isEmpty() || counts.size() != bounds.size() + 1) {
            throw new TraceFormatException(
                    path,
                    "its latency histogram has " + counts.size() + " counts for " + bounds.size()
                            + " bounds (at least one)");
        }
        return new Trace(
                header.path("what").asString(""),
                header.path("page_size").asLong(4096),
                header.path("data_pages").asLong(0),
                samples,
                end.path("ready_ms").asDouble(-1),
                end.path("populated_ms").asDouble(-1),
                bounds,
                counts);
    }

    /** The next line, at most {@link #MAX_LINE} characters; null at the end. */
    private static String line(Path path, java.io.BufferedReader in, int number) throws IOException {
        StringBuilder b = new StringBuilder();
        for (int c; (c = in.read()) != -1; ) {
            if (c == '\n') return b.toString();
            if (b.length() == MAX_LINE) {
                throw new TraceFormatException(
                        path,
                        "line " + number + " is longer than " + MAX_LINE + " characters"
                                + (number == 1 ? ": not a gmem trace" : ""));
            }
            b.append((char) c);
        }
        return b.isEmpty() ? null : b.toString();
    }

    private static JsonNode parse(Path path, String line, int number) throws TraceFormatException {
        try {
            return JsonLine.parse(line);
        } catch (JacksonException e) {
            throw new TraceFormatException(
                    path,
                    "line " + number + " is not JSON" + (number == 1 ? ": not a gmem trace" : ": the file is damaged"));
        }
    }

    private static List<Long> longs(Path path, JsonNode end, String field) throws TraceFormatException {
        JsonNode a = end.path(field);
        if (!a.isArray()) throw new TraceFormatException(path, "its end record has no " + field);
        List<Long> out = new ArrayList<>();
        for (JsonNode x : a) {
            if (!x.isIntegralNumber() || x.asLong() < 0)
                throw new TraceFormatException(path, "its " + field + " are not whole numbers at least 0");
            out.add(x.asLong());
        }
        return out;
    }
}
