package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;
import tools.jackson.databind.JsonNode;

class ProbeCommandTest {
    record Run(int exit, String out, String err) {}

    static Run run(String... args) {
        CommandLine cl = Main.commandLine();
        StringWriter out = new StringWriter();
        StringWriter err = new StringWriter();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int exit = cl.execute(args);
        return new Run(exit, out.toString(), err.toString());
    }

    /** The JSON keys the README documents: a stable interface for tools. */
    @Test
    void jsonHasTheDocumentedKeys() {
        Run r = run("probe", "--json");
        assertThat(r.exit()).isZero();
        JsonNode root = Json.mapper().readTree(r.out());
        assertThat(names(root)).containsExactly("kernel", "kvm", "guest_memfd", "userfaultfd", "huge_pages");
        assertThat(names(root.get("kernel"))).containsExactly("release", "machine", "page_size", "cpus");
        assertThat(names(root.get("kvm"))).containsExactly("available", "reason", "device", "api_version");
        assertThat(names(root.get("guest_memfd"))).containsExactly("available", "reason", "flags_mask", "flags", "unknown_flag_bits",
                "vm_flags_mask", "write", "conversion", "userfaultfd");
        for (String check : List.of("write", "conversion", "userfaultfd")) {
            assertThat(names(root.get("guest_memfd").get(check))).containsExactly("available", "reason");
        }
        assertThat(names(root.get("userfaultfd"))).containsExactly("available", "reason", "via", "features_mask", "features",
                "missing_memfd", "minor_memfd");
        assertThat(names(root.get("huge_pages"))).containsExactly("thp_shmem", "thp_shmem_mode", "hugetlb");
    }

    @Test
    void humanReportHasOneLinePerAnswer() {
        Run r = run("probe");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains("KVM ", "guest_memfd ", "write() population", "in-place conversion", "MISSING on memfd",
                "MINOR on memfd", "THP for shmem", "hugetlb pages");
        assertThat(r.out().lines().filter(l -> l.matches("^\\s*\\S.*\\s(yes|no)\\s{2,}.*"))).hasSize(10);
    }

    @Test
    void anUnknownOptionIsOneLineThatSaysWhereTheHelpIs() {
        Run r = run("probe", "--bogus");
        assertThat(r.exit()).isEqualTo(2);
        assertThat(r.err()).isEqualTo("gmem probe: Unknown option: '--bogus' (see 'gmem probe --help')\n");
    }

    @Test
    void helpDescribesEveryCommand() {
        Run r = run("--help");
        assertThat(r.exit()).isZero();
        assertThat(r.out()).contains("probe").contains("guest memory");
        assertThat(run("probe", "--help").out()).contains("--json").contains("Every \"no\" says why");
    }

    private static List<String> names(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.propertyNames().forEach(names::add);
        return names;
    }
}
