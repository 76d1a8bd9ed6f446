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
        CommandLine cl = Main.commandLine(args); // as gmem runs: only the command the arguments name
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
        assertThat(names(root.get("guest_memfd")))
                .containsExactly(
                        "available",
                        "reason",
                        "flags_mask",
                        "flags",
                        "unknown_flag_bits",
                        "vm_flags_mask",
                        "write",
                        "conversion",
                        "userfaultfd");
        for (String check : List.of("write", "conversion", "userfaultfd")) {
            assertThat(names(root.get("guest_memfd").get(check))).containsExactly("available", "reason");
        }
        assertThat(names(root.get("userfaultfd")))
                .containsExactly(
                        "available", "reason", "via", "features_mask", "features", "missing_memfd", "minor_memfd");
        assertThat(names(root.get("huge_pages"))).containsExactly("thp_shmem", "thp_shmem_mode", "hugetlb");
    }

    @Test
    void humanReportHasOneLinePerAnswer() {
        Run r = run("probe");
        assertThat(r.exit()).isZero();
        assertThat(r.out())
                .contains(
                        "KVM ",
                        "guest_memfd ",
                        "write() population",
                        "in-place conversion",
                        "MISSING on memfd",
                        "MINOR on memfd",
                        "THP for shmem",
                        "hugetlb pages");
        assertThat(r.out().lines().filter(l -> l.matches("^\\s*\\S.*\\s(yes|no)\\s{2,}.*")))
                .hasSize(10);
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

    /** Every command's help, nested ones included: a whole-sentence summary, and no picocli warning (an unescaped % prints one). */
    @Test
    void everyHelpHasASentenceForItsSummaryAndNoWarning() {
        List<String[]> paths = new ArrayList<>();
        collect(Main.commandLine(), new ArrayList<>(), paths);
        assertThat(paths).hasSizeGreaterThan(12);
        java.io.PrintStream saved = System.err;
        java.io.ByteArrayOutputStream warnings = new java.io.ByteArrayOutputStream();
        try {
            System.setErr(new java.io.PrintStream(warnings, true, java.nio.charset.StandardCharsets.UTF_8));
            for (String[] path : paths) {
                List<String> args = new ArrayList<>(List.of(path));
                args.add("--help");
                Run r = run(args.toArray(String[]::new));
                assertThat(r.exit()).as(String.join(" ", args)).isZero();
                assertThat(r.out())
                        .as(String.join(" ", args))
                        .contains("Usage: gmem")
                        .doesNotContain("%n");
            }
        } finally {
            System.setErr(saved);
        }
        assertThat(warnings.toString(java.nio.charset.StandardCharsets.UTF_8)).isEmpty();
        CommandLine all = Main.commandLine();
        for (String[] path : paths) {
            CommandLine c = all;
            for (String name : path) c = c.getSubcommands().get(name);
            if (path.length > 0 && !path[path.length - 1].equals("help")) {
                assertThat(c.getCommandSpec().usageMessage().header())
                        .as(String.join(" ", path) + " has a one-line summary")
                        .hasSize(1);
                assertThat(c.getCommandSpec().usageMessage().header()[0])
                        .as(String.join(" ", path))
                        .matches("[A-Z].*\\.");
            }
        }
    }

    private static void collect(CommandLine c, List<String> path, List<String[]> out) {
        out.add(path.toArray(String[]::new));
        for (var e : c.getSubcommands().entrySet()) {
            List<String> next = new ArrayList<>(path);
            next.add(e.getKey());
            collect(e.getValue(), next, out);
        }
    }

    private static List<String> names(JsonNode node) {
        List<String> names = new ArrayList<>();
        node.propertyNames().forEach(names::add);
        return names;
    }
}
