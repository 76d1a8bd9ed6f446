package dev.gmem.qemu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;

/** QMP's lines as {@link Qmp} reads and writes them, without a QEMU: what QEMU sends, and what it must refuse. */
class QmpCodecTest {
    @Test
    void aGreetingAndAReplyReadAsTrees() {
        JsonNode g = Qmp.parse("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7},"
                + " \"package\": \"Debian 1:7.2\"}, \"capabilities\": [\"oob\"]}}");
        assertThat(g.path("QMP").path("version").path("qemu").path("major").asInt())
                .isEqualTo(7);
        assertThat(g.path("QMP").path("capabilities").get(0).asString()).isEqualTo("oob");
        JsonNode r = Qmp.parse("{\"return\": {\"status\": \"paused\", \"running\": false, \"ram\": 1.5,"
                + " \"max\": 18446744073709551615, \"none\": null, \"size\": 1073741824}, \"id\": 3}");
        assertThat(r.path("id").asLong()).isEqualTo(3);
        assertThat(r.path("return").path("status").asString()).isEqualTo("paused");
        assertThat(r.path("return").path("running").asBoolean(true)).isFalse();
        assertThat(r.path("return").path("ram").asDouble()).isEqualTo(1.5);
        assertThat(r.path("return").path("max").bigIntegerValue())
                .isEqualTo(new java.math.BigInteger("18446744073709551615"));
        assertThat(r.path("return").path("none").isNull()).isTrue();
        assertThat(r.path("return").path("size").asLong()).isEqualTo(1L << 30);
    }

    @Test
    void whatIsNotOneJsonValueIsRefused() {
        for (String bad : List.of("", "not json", "{\"a\": 1} {\"b\": 2}", "{\"a\": ", "[1, 2"))
            assertThatThrownBy(() -> Qmp.parse(bad)).as(bad).isInstanceOf(JacksonException.class);
        String deep = "[".repeat(65) + "]".repeat(65);
        assertThatThrownBy(() -> Qmp.parse(deep))
                .isInstanceOf(JacksonException.class)
                .hasMessageContaining("nested deeper than 64");
        assertThat(Qmp.parse("[".repeat(64) + "]".repeat(64)).isArray()).isTrue();
    }

    @Test
    void aCommandIsOneLineWithItsArgumentsAndId() {
        Map<String, Object> args = new LinkedHashMap<>();
        args.put("uri", "fd:gmem \"state\"");
        args.put("max-bandwidth", Long.MAX_VALUE / 2);
        Map<String, Object> capability = new LinkedHashMap<>(); // Map.of's order differs from run to run
        capability.put("capability", "x-ignore-shared");
        capability.put("state", true);
        args.put("capabilities", List.of(capability));
        String line = new String(Qmp.command("migrate", args, 7), StandardCharsets.UTF_8);
        assertThat(line)
                .isEqualTo("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"fd:gmem \\\"state\\\"\","
                        + "\"max-bandwidth\":4611686018427387903,"
                        + "\"capabilities\":[{\"capability\":\"x-ignore-shared\",\"state\":true}]},\"id\":7}\n");
        Map<String, Object> numbers = new LinkedHashMap<>();
        numbers.put("short", (short) 5);
        numbers.put("int", 6);
        numbers.put("big", new java.math.BigInteger("18446744073709551615"));
        numbers.put("ratio", 0.5);
        assertThat(new String(Qmp.command("n", numbers, 9), StandardCharsets.UTF_8))
                .isEqualTo("{\"execute\":\"n\",\"arguments\":{\"short\":5,\"int\":6,\"big\":18446744073709551615,"
                        + "\"ratio\":0.5},\"id\":9}\n");
        assertThatThrownBy(() -> Qmp.command("x", Map.of("what", new Object()), 1))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("a JSON value of type java.lang.Object");
        assertThat(new String(Qmp.command("cont", Map.of(), 8), StandardCharsets.UTF_8))
                .isEqualTo("{\"execute\":\"cont\",\"id\":8}\n");
        // and QEMU's side reads it back as the same tree
        assertThat(Qmp.parse(line.strip())
                        .path("arguments")
                        .path("capabilities")
                        .get(0)
                        .path("state")
                        .asBoolean())
                .isTrue();
    }
}
