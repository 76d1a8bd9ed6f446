package dev.gmem.cli;

import java.lang.reflect.Array;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.RecordComponent;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.file.Path;
import java.util.Base64;
import java.util.Collection;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import tools.jackson.databind.json.JsonMapper;

/**
 * The one JSON writer of the command line: a record's components as snake_case keys in
 * declaration order, indented as Jackson's default pretty printer indents (or on one line).
 *
 * <p>It writes the values the commands report and nothing else: null, booleans, numbers, strings,
 * characters, enums (by their toString), records (the components an {@link Inlining} record names written
 * in place, as Jackson's {@code @JsonUnwrapped}), maps (keys as written, not renamed), collections, arrays and
 * {@link Optional}s; a {@link Path} as its {@code file:} URI, as Jackson writes one. Anything
 * else is a bug in the caller and is refused with the class named. It is written here rather than
 * with Jackson's object mapper because building that mapper and its first record type cost about
 * 50 ms, which every {@code --json} run of a short command paid (docs/benchmarks.md, start time);
 * the output is the same, byte for byte, which {@code JsonTest} checks against Jackson. Reading
 * JSON still goes through {@link #mapper()}.
 */
final class Json {
    private Json() {}

    /** {@code value} indented, two spaces a level. */
    static String write(Object value) {
        StringBuilder out = new StringBuilder(512);
        new Writer(out, true).value(value, 0);
        return out.toString();
    }

    /** {@code value} on one line: for daemons' event lines and control replies. */
    static String oneLine(Object value) {
        StringBuilder out = new StringBuilder(128);
        new Writer(out, false).value(value, 0);
        return out.toString();
    }

    /** A mapper for reading JSON (control replies, state files), built on first use only. */
    static JsonMapper mapper() {
        return Reader.MAPPER;
    }

    private static final class Reader {
        static final JsonMapper MAPPER = JsonMapper.builder().build();
    }

    /** Each record type's components, with accessors made callable once and keys renamed once. */
    private static final ConcurrentHashMap<Class<?>, Component[]> COMPONENTS = new ConcurrentHashMap<>();

    /**
     * A record some of whose components hold records that are written in their place: their
     * members as if they were the enclosing record's own (nothing is written for a null one). Said by
     * an interface rather than an annotation on the component: reading a component's annotations
     * costs the first {@code --json} run of a command about 3 ms (an annotation proxy class).
     */
    interface Inlining {
        /** The names of the components written in place, as declared; the same for every instance. */
        Set<String> inlined();
    }

    private record Component(String key, Method accessor, boolean inline) {}

    private static Component[] components(Record r) {
        return COMPONENTS.computeIfAbsent(r.getClass(), t -> {
            Set<String> inlined = r instanceof Inlining i ? i.inlined() : Set.of();
            RecordComponent[] rc = t.getRecordComponents();
            Component[] out = new Component[rc.length];
            int found = 0;
            for (int i = 0; i < rc.length; i++) {
                Method m = rc[i].getAccessor();
                m.setAccessible(true); // a record private to its command: same module, always allowed
                boolean inline = inlined.contains(rc[i].getName());
                if (inline) found++;
                out[i] = new Component(snakeCase(rc[i].getName()), m, inline);
            }
            if (found != inlined.size())
                throw new IllegalArgumentException(
                        t.getName() + " inlines " + inlined + ", which are not all its components");
            return out;
        });
    }

    /**
     * A component's name in snake_case as Jackson's naming strategy makes it: an underscore before
     * each run of capitals, which become lower case ({@code gibPerS} is {@code gib_per_s},
     * {@code p99Us} is {@code p99_us}).
     */
    static String snakeCase(String name) {
        StringBuilder b = new StringBuilder(name.length() + 8);
        boolean previousUpper = false;
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            if (i == 0 && c == '_') continue;
            if (Character.isUpperCase(c)) {
                if (!previousUpper && !b.isEmpty() && b.charAt(b.length() - 1) != '_') b.append('_');
                c = Character.toLowerCase(c);
                previousUpper = true;
            } else {
                previousUpper = false;
            }
            b.append(c);
        }
        return b.isEmpty() ? name : b.toString();
    }

    private record Writer(StringBuilder out, boolean indent) {
        /** {@code level}: how many objects enclose this value (arrays stay on their line). */
        void value(Object v, int level) {
            switch (v) {
                case null -> out.append("null");
                case String s -> string(s);
                case Boolean b -> out.append(b.booleanValue());
                case Integer n -> out.append(n.intValue());
                case Long n -> out.append(n.longValue());
                case Short n -> out.append(n.shortValue());
                case Byte n -> out.append(n.byteValue());
                case Double d -> floating(d.isNaN() || d.isInfinite(), Double.toString(d));
                case Float f -> floating(f.isNaN() || f.isInfinite(), Float.toString(f));
                case BigInteger n -> out.append(n);
                case BigDecimal n -> out.append(n);
                case Character c -> string(String.valueOf(c));
                case CharSequence s -> string(s.toString());
                case Enum<?> e -> string(e.toString()); // as Jackson writes enums by default
                case Record r -> record(r, level);
                case Map<?, ?> m -> map(m, level);
                case Collection<?> c -> array(c.toArray(), level);
                case Optional<?> o -> value(o.orElse(null), level);
                case Path p -> string(p.toUri().toString());
                case char[] c -> string(new String(c));
                case byte[] b -> string(Base64.getEncoder().encodeToString(b));
                case Object[] a -> array(a, level);
                default -> {
                    if (!v.getClass().isArray()) {
                        throw new IllegalArgumentException(
                                "cannot write a " + v.getClass().getName() + " as JSON");
                    }
                    Object[] boxed = new Object[Array.getLength(v)];
                    for (int i = 0; i < boxed.length; i++) boxed[i] = Array.get(v, i);
                    array(boxed, level);
                }
            }
        }

        /** Not-a-number and the infinities as strings, as Jackson writes them: JSON has no such numbers. */
        private void floating(boolean notANumber, String text) {
            if (notANumber) string(text);
            else out.append(text);
        }

        private void record(Record r, int level) {
            int start = out.length();
            out.append('{');
            if (members(r, 0, level) == 0) {
                out.setLength(start);
                out.append(indent ? "{ }" : "{}");
                return;
            }
            close(level);
        }

        /** Writes {@code r}'s members after {@code written} others; returns how many there are now. */
        private int members(Record r, int written, int level) {
            for (Component c : components(r)) {
                Object v;
                try {
                    v = c.accessor().invoke(r);
                } catch (IllegalAccessException e) {
                    throw new IllegalStateException(e);
                } catch (InvocationTargetException e) {
                    if (e.getCause() instanceof RuntimeException re) throw re;
                    if (e.getCause() instanceof Error err) throw err;
                    throw new IllegalStateException(e.getCause());
                }
                if (c.inline()) {
                    if (v instanceof Record inner) written = members(inner, written, level);
                    else if (v != null) throw new IllegalArgumentException(c.key() + ": only a record can be inline");
                    continue;
                }
                key(written++, c.key(), level);
                value(v, level + 1);
            }
            return written;
        }

        private void map(Map<?, ?> m, int level) {
            if (m.isEmpty()) {
                out.append(indent ? "{ }" : "{}");
                return;
            }
            out.append('{');
            int i = 0;
            for (Map.Entry<?, ?> e : m.entrySet()) {
                key(i++, String.valueOf(e.getKey()), level);
                value(e.getValue(), level + 1);
            }
            close(level);
        }

        private void key(int index, String key, int level) {
            if (index > 0) out.append(',');
            if (indent) newline(level + 1);
            string(key);
            out.append(indent ? " : " : ":");
        }

        private void close(int level) {
            if (indent) newline(level);
            out.append('}');
        }

        private void newline(int level) {
            out.append('\n');
            for (int i = 0; i < level; i++) out.append("  ");
        }

        private void array(Object[] a, int level) {
            if (a.length == 0) {
                out.append(indent ? "[ ]" : "[]");
                return;
            }
            out.append(indent ? "[ " : "[");
            for (int i = 0; i < a.length; i++) {
                if (i > 0) out.append(indent ? ", " : ",");
                value(a[i], level);
            }
            out.append(indent ? " ]" : "]");
        }

        private static final char[] HEX = "0123456789ABCDEF".toCharArray();

        private void string(String s) {
            out.append('"');
            for (int i = 0; i < s.length(); i++) {
                char c = s.charAt(i);
                switch (c) {
                    case '"' -> out.append("\\\"");
                    case '\\' -> out.append("\\\\");
                    case '\n' -> out.append("\\n");
                    case '\r' -> out.append("\\r");
                    case '\t' -> out.append("\\t");
                    case '\b' -> out.append("\\b");
                    case '\f' -> out.append("\\f");
                    default -> {
                        if (c < 0x20) out.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xF]);
                        else out.append(c);
                    }
                }
            }
            out.append('"');
        }
    }
}
