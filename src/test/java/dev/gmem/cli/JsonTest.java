package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.annotation.JsonUnwrapped;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Strategy;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.PropertyNamingStrategies;
import tools.jackson.databind.SerializationFeature;
import tools.jackson.databind.json.JsonMapper;

/** The command line's JSON writer writes what Jackson's mapper wrote before it, byte for byte. */
class JsonTest {
    /** How the command line's JSON was written before its own writer: the reference. */
    private static final JsonMapper JACKSON = JsonMapper.builder()
            .propertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .build();

    enum Kind {
        DATA,
        ZERO {
            @Override
            public String toString() {
                return "zero pages";
            }
        }
    }

    record Inner(String name, long gibPerS, Double maybe, List<Integer> counts) {}

    /** Marked for both writers: Jackson's annotation for the reference, gmem's interface for its own. */
    record Wrapper(
            double openMs,
            @JsonUnwrapped Inner inner,
            @JsonUnwrapped Wrapper nested,
            String after) implements Json.Inlining {
        @Override
        public Set<String> inlined() {
            return Set.of("inner", "nested");
        }
    }

    record Names(int x, int p99Us, int fullyResidentMs, int aBc, int urlName, int hTTPStatus, int _under, int a1B2) {}

    record Everything(
            String text,
            boolean flag,
            Boolean noFlag,
            int anInt,
            long aLong,
            short aShort,
            byte aByte,
            double aDouble,
            float aFloat,
            BigInteger big,
            BigDecimal decimal,
            char letter,
            Kind kind,
            Inner inner,
            Inner nothing,
            List<Inner> inners,
            List<String> empty,
            Map<String, Inner> byName,
            Map<String, Long> emptyMap,
            Map<String, Double> doubles,
            LinkedHashSet<Long> set,
            long[] longs,
            int[] ints,
            double[] noDoubles,
            List<long[]> ranges,
            Optional<String> present,
            Optional<Long> absent,
            Path path,
            Names names) {}

    private static Everything sample(SplittableRandom r) {
        double[] specials = {
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-5,
            1e-3,
            1e7,
            1e10,
            123456789.125,
            Double.NaN,
            Double.POSITIVE_INFINITY,
            Double.NEGATIVE_INFINITY,
            Double.MIN_VALUE,
            Double.MAX_VALUE
        };
        Map<String, Inner> byName = new LinkedHashMap<>();
        byName.put("first key", new Inner("a\"b\\c", r.nextLong(), null, List.of()));
        byName.put("ünï ✓", new Inner("tab\there\nnew\rline\b\f\u0001\u001f\u007f", -1, 2.5, List.of(1, 2, 3)));
        Map<String, Double> doubles = new LinkedHashMap<>();
        for (double d : specials) doubles.put("v" + doubles.size(), d);
        doubles.put("random", r.nextDouble() * Math.pow(10, r.nextInt(-8, 12)));
        doubles.put("null", null);
        LinkedHashSet<Long> set = new LinkedHashSet<>(List.of(3L, 1L, 2L));
        List<Inner> inners = new ArrayList<>();
        for (int i = 0; i < r.nextInt(1, 4); i++) {
            inners.add(new Inner("i" + i, r.nextLong(), r.nextDouble(), List.of(r.nextInt(), i)));
        }
        return new Everything(
                "/dev/shm/g.snap",
                true,
                null,
                r.nextInt(),
                r.nextLong(),
                (short) -7,
                (byte) 9,
                specials[r.nextInt(specials.length)],
                (float) r.nextDouble(),
                BigInteger.TWO.pow(70).negate(),
                new BigDecimal("12345.678900"),
                'q',
                Kind.ZERO,
                new Inner("n", 4, 1.0 / 3, List.of(7)),
                null,
                inners,
                List.of(),
                byName,
                Map.of(),
                doubles,
                set,
                new long[] {1, -2, Long.MAX_VALUE},
                new int[] {},
                new double[] {0.5},
                List.of(new long[] {0, 4096}, new long[] {8192, 12288}),
                Optional.of("here"),
                Optional.empty(),
                Path.of("/tmp/a b"),
                new Names(1, 2, 3, 4, 5, 6, 7, 8));
    }

    @Test
    void writesWhatJacksonWrote() {
        SplittableRandom r = new SplittableRandom(42);
        for (int i = 0; i < 50; i++) {
            Everything e = sample(r);
            assertThat(Json.write(e)).isEqualTo(JACKSON.writeValueAsString(e));
            assertThat(Json.oneLine(e))
                    .isEqualTo(JACKSON.writer()
                            .without(SerializationFeature.INDENT_OUTPUT)
                            .writeValueAsString(e));
        }
    }

    /** Inline records, enums, arrays of them and collections at the top. */
    @Test
    void writesInlineRecordsAndTopLevelValuesAsJacksonDid() {
        Object[] reports = {
            new Inner("x", 1, null, List.of()),
            new Wrapper(0.5, new Inner("in", 2, 0.25, List.of(1)), null, "after"),
            new Wrapper(1.5, null, new Wrapper(2.5, new Inner("deep", 3, null, List.of()), null, null), "x"),
            List.of(new Wrapper(3.5, null, null, null)),
            GuestMemory.Backend.MEMFD,
            Strategy.values(),
            List.of(Map.of("pages", Map.of("data", 30672L))),
        };
        for (Object o : reports) assertThat(Json.write(o)).isEqualTo(JACKSON.writeValueAsString(o));
    }

    @Test
    void renamesAsJacksonsSnakeCase() {
        for (String n : List.of("gibPerS", "p99Us", "URL", "aURLName", "_x", "x_y", "xY_z", "a1B2", "already_snake")) {
            assertThat(Json.snakeCase(n))
                    .as(n)
                    .isEqualTo(PropertyNamingStrategies.SNAKE_CASE.nameForField(null, null, n));
        }
    }

    record NotARecordInline(Object value) implements Json.Inlining {
        @Override
        public Set<String> inlined() {
            return Set.of("value");
        }
    }

    record InlinesWhatItLacks(int value) implements Json.Inlining {
        @Override
        public Set<String> inlined() {
            return Set.of("value", "other");
        }
    }

    @Test
    void refusesWhatItDoesNotKnowWithTheClassNamed() {
        assertThatThrownBy(() -> Json.write(new Object[] {new Object()}))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("cannot write a java.lang.Object as JSON");
        assertThatThrownBy(() -> Json.write(new NotARecordInline("text")))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessage("value: only a record can be inline");
        assertThatThrownBy(() -> Json.write(new InlinesWhatItLacks(1)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("InlinesWhatItLacks inlines")
                .hasMessageEndingWith(", which are not all its components");
    }
}
