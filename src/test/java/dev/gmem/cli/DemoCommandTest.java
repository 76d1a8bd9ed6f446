package dev.gmem.cli;

import static dev.gmem.cli.ProbeCommandTest.run;
import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.probe.HostProbe;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;

class DemoCommandTest {
    @TempDir
    Path dir;

    @Test
    void theDemoRunsEndToEndAndSaysWhatItSkipped() throws Exception {
        ProbeCommandTest.Run r = run("demo", "--size", "8M", "--dir", dir.toString(), "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode root = Json.mapper().readTree(r.out());
        assertThat(root.get("size_bytes").asLong()).isEqualTo(8L << 20);
        List<String> rows = new ArrayList<>();
        for (JsonNode x : root.get("rows")) {
            rows.add(x.get("mode").asString() + "/" + x.get("backend").asString());
            String check =
                    x.get("guest_check").isNull() ? null : x.get("guest_check").asString();
            String note = x.get("note").isNull() ? "" : x.get("note").asString();
            if (x.get("ms").isNull()) {
                assertThat(note)
                        .as("a row that did not run says why")
                        .startsWith("skipped: ")
                        .hasSizeGreaterThan(20);
                continue;
            }
            if (HostProbe.host().kvm().available()) {
                assertThat(check).as(x.toString()).startsWith("passed (2048 pages)");
            } else {
                assertThat(check).startsWith("skipped: ");
            }
        }
        // a host without guest_memfd gets one skipped row for the kernel backend's eager restores, not one a strategy
        List<String> expected = new ArrayList<>();
        expected.add("eager/kernel");
        if (HostProbe.host().guestMemfd().available()) expected.add("eager/kernel");
        expected.addAll(List.of("eager/memfd", "eager/memfd", "lazy/memfd", "lazy/memfd", "lazy/kernel"));
        assertThat(rows).containsExactlyElementsOf(expected);
        try (var left = java.nio.file.Files.list(dir)) {
            assertThat(left.toList()).isEmpty();
        }
    }

    @Test
    void restoreCheckGuestReportsTheVcpu() throws Exception {
        dev.gmem.testing.Host.assumeKvm();
        String snap = SnapshotCommandTest.synthAndPack(dir, "4M");
        ProbeCommandTest.Run r = run("restore", snap, "--check-guest", "--json");
        assertThat(r.exit()).as(r.err()).isZero();
        JsonNode g = Json.mapper().readTree(r.out()).get("guest_check");
        assertThat(g.get("status").asString()).isEqualTo("passed");
        assertThat(g.get("result").get("pages_read").asLong()).isEqualTo(1024);
        assertThat(run("restore", snap, "--check-guest", "--check-stride", "4").out())
                .contains("a vCPU read 256 pages");
    }
}
