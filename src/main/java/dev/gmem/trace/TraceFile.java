package dev.gmem.trace;

import dev.gmem.util.OutputFile;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

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
    private static final JsonMapper JSON = JsonMapper.builder().build();

    private TraceFile() {}

    public static void write(Trace t, Path path) throws IOException {
        StringBuilder b = new StringBuilder();
        ObjectNode header = JSON.createObjectNode();
        header.put("format", FORMAT)
                .put("version", VERSION)
                .put("what", t.what())
                .put("page_size", t.pageSize())
                .put("data_pages", t.dataPages());
        b.append(JSON.writeValueAsString(header)).append('\n');
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
        ObjectNode end = JSON.createObjectNode();
        end.put("end", true)
                .put("samples", t.samples().size())
                .put("ready_ms", t.readyMs())
                .put("populated_ms", t.populatedMs());
        ArrayNode bounds = end.putArray("latency_bounds_us");
        t.latencyBoundsUs().forEach(bounds::add);
        ArrayNode counts = end.putArray("latency_counts");
        t.latencyCounts().forEach(counts::add);
        b.append(JSON.writeValueAsString(end)).append('\n');
        byte[] bytes = b.toString().getBytes(StandardCharsets.UTF_8);
        try (OutputFile out = OutputFile.create(path, OutputFile.Mode.REPLACE, 0644);
                Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(Math.max(1, bytes.length));
            MemorySegment.copy(bytes, 0, seg, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, bytes.length);
            out.fd().pwriteFully(seg.asSlice(0, bytes.length), 0);
            out.commit();
        }
    }

    /** Reads a trace, refusing anything but a whole version-1 gmem trace, in one line that says why. */
    public static Trace read(Path path) throws IOException {
        List<String> lines;
        try {
            lines = Files.readAllLines(path, StandardCharsets.UTF_8);
        } catch (java.nio.charset.MalformedInputException e) {
            throw new TraceFormatException(path, "not a gmem trace (not text)");
        }
        if (lines.isEmpty()) throw new TraceFormatException(path, "empty: not a gmem trace");
        JsonNode header = parse(path, lines.get(0), 1);
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
        for (int i = 1; i < lines.size(); i++) {
            if (lines.get(i).isBlank()) continue;
            JsonNode n = parse(path, lines.get(i), i + 1);
            if (n.isObject() && n.path("end").asBoolean(false)) {
                end = n;
                if (i != lines.size() - 1
                        && !lines.subList(i + 1, lines.size()).stream().allMatch(String::isBlank)) {
                    throw new TraceFormatException(path, "line " + (i + 2) + ": data after the end record");
                }
                break;
            }
            if (!n.isArray() || n.size() != 6)
                throw new TraceFormatException(path, "line " + (i + 1) + ": not a sample of 6 numbers");
            for (JsonNode x : n) {
                if (!x.isNumber())
                    throw new TraceFormatException(path, "line " + (i + 1) + ": not a sample of 6 numbers");
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
        if (counts.size() != bounds.size() + 1)
            throw new TraceFormatException(
                    path, "its latency histogram has " + counts.size() + " counts for " + bounds.size() + " bounds");
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

    private static JsonNode parse(Path path, String line, int number) throws TraceFormatException {
        try {
            return JSON.readTree(line);
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
        for (JsonNode x : a) out.add(x.asLong());
        return out;
    }
}
