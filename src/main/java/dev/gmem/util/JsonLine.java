package dev.gmem.util;

import java.io.StringWriter;
import java.util.List;
import java.util.Map;
import tools.jackson.core.JsonGenerator;
import tools.jackson.core.JsonParser;
import tools.jackson.core.JsonToken;
import tools.jackson.core.ObjectReadContext;
import tools.jackson.core.ObjectWriteContext;
import tools.jackson.core.exc.StreamReadException;
import tools.jackson.core.json.JsonFactory;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.JsonNodeFactory;
import tools.jackson.databind.node.ObjectNode;

/**
 * One JSON value on one line, read and written with Jackson's streaming parser and generator into
 * and from Jackson's tree nodes, without an {@code ObjectMapper}: a mapper and the classes it loads
 * cost tens of milliseconds at first use, and they grew the ahead-of-time cache that every gmem
 * command loads at start by about a quarter (docs/benchmarks.md, start time). For QMP's messages
 * and the trace file's lines.
 */
public final class JsonLine {
    private static final JsonFactory JSON = new JsonFactory();

    /** The deepest nesting of objects and arrays read (QMP's replies and a trace's lines nest a few levels). */
    public static final int MAX_DEPTH = 64;

    private JsonLine() {}

    /**
     * The one JSON value that is the whole of {@code text}; a malformed value, a second value, or
     * nesting deeper than {@link #MAX_DEPTH} fails with Jackson's read exception. Integers are
     * read as int, long or big-integer nodes, whichever holds them.
     */
    public static JsonNode parse(String text) {
        try (JsonParser p = JSON.createParser(ObjectReadContext.empty(), text)) {
            JsonToken first = p.nextToken();
            if (first == null) throw new StreamReadException(p, "an empty line");
            JsonNode n = value(p, first, 0);
            if (p.nextToken() != null) throw new StreamReadException(p, "more than one value on a line");
            return n;
        }
    }

    private static JsonNode value(JsonParser p, JsonToken t, int depth) {
        JsonNodeFactory nodes = JsonNodeFactory.instance;
        if ((t == JsonToken.START_OBJECT || t == JsonToken.START_ARRAY) && depth >= MAX_DEPTH)
            throw new StreamReadException(p, "nested deeper than " + MAX_DEPTH);
        return switch (t) {
            case START_OBJECT -> {
                ObjectNode o = nodes.objectNode();
                while (p.nextToken() == JsonToken.PROPERTY_NAME) {
                    String name = p.currentName();
                    o.set(name, value(p, p.nextToken(), depth + 1));
                }
                yield o;
            }
            case START_ARRAY -> {
                ArrayNode a = nodes.arrayNode();
                for (JsonToken e; (e = p.nextToken()) != JsonToken.END_ARRAY; ) a.add(value(p, e, depth + 1));
                yield a;
            }
            case VALUE_STRING -> nodes.stringNode(p.getString());
            case VALUE_NUMBER_INT ->
                switch (p.getNumberType()) {
                    case INT -> nodes.numberNode(p.getIntValue());
                    case LONG -> nodes.numberNode(p.getLongValue());
                    default -> nodes.numberNode(p.getBigIntegerValue()); // QMP's uint64 past Long.MAX_VALUE
                };
            case VALUE_NUMBER_FLOAT -> nodes.numberNode(p.getDoubleValue());
            case VALUE_TRUE -> nodes.booleanNode(true);
            case VALUE_FALSE -> nodes.booleanNode(false);
            case VALUE_NULL -> nodes.nullNode();
            default -> throw new StreamReadException(p, "unexpected " + t);
        };
    }

    /**
     * {@code value} as one line of JSON, without the newline: a string, number, boolean, null, or a
     * map (in its iteration order) or list of them. Integers keep their exact type.
     */
    public static String write(Object value) {
        StringWriter out = new StringWriter();
        try (JsonGenerator g = JSON.createGenerator(ObjectWriteContext.empty(), out)) {
            write(g, value);
        }
        return out.toString();
    }

    private static void write(JsonGenerator g, Object v) {
        switch (v) {
            case null -> g.writeNull();
            case String s -> g.writeString(s);
            case Boolean b -> g.writeBoolean(b);
            case Byte n -> g.writeNumber(n.longValue());
            case Short n -> g.writeNumber(n.longValue());
            case Integer n -> g.writeNumber(n.longValue());
            case Long n -> g.writeNumber(n.longValue());
            case java.math.BigInteger n -> g.writeNumber(n);
            case java.math.BigDecimal n -> g.writeNumber(n);
            case Float n -> g.writeNumber(n.doubleValue());
            case Double n -> g.writeNumber(n.doubleValue());
            case Map<?, ?> m -> {
                g.writeStartObject();
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    g.writeName(String.valueOf(e.getKey()));
                    write(g, e.getValue());
                }
                g.writeEndObject();
            }
            case List<?> l -> {
                g.writeStartArray();
                for (Object o : l) write(g, o);
                g.writeEndArray();
            }
            default ->
                throw new IllegalArgumentException(
                        "a JSON value of type " + v.getClass().getName());
        }
    }
}
