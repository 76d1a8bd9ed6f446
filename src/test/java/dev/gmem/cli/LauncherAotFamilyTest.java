package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The launcher's choice of ahead-of-time cache, from {@code build/aot-family.sh} (the file the
 * launcher sources), run by bash: every command line {@link AotTraining} trains a family on starts
 * with that family's cache, so that a cache holds the classes its command loads and no others.
 */
@Timeout(60)
class LauncherAotFamilyTest {
    private static final Path FAMILY = Path.of("build/aot-family.sh");

    @Test
    void everyTrainedCommandLineStartsWithItsFamilysCache() throws Exception {
        Map<String, List<String[]>> families = AotTraining.families(Path.of("/tmp/x"));
        assertThat(families).containsKeys(AotTraining.ALL, AotTraining.MAIN, "restore", "restore-lazy");
        List<String> checked = new ArrayList<>();
        for (var f : families.entrySet()) {
            if (f.getKey().equals(AotTraining.ALL)) continue;
            for (String[] line : f.getValue()) {
                assertThat(family(line)).as(String.join(" ", line)).isEqualTo(f.getKey());
                checked.add(f.getKey());
            }
        }
        assertThat(checked).hasSizeGreaterThan(8);
        // all.aot trains every family's command lines
        assertThat(families.get(AotTraining.ALL))
                .hasSize(families.entrySet().stream()
                        .filter(e -> !e.getKey().equals(AotTraining.ALL))
                        .mapToInt(e -> e.getValue().size())
                        .sum());
    }

    @Test
    void namesTheFamilyOfOtherCommandLines() throws Exception {
        assertThat(family()).isEqualTo("main");
        assertThat(family("--help")).isEqualTo("main");
        assertThat(family("restore", "g.snap", "--mode", "eager")).isEqualTo("restore");
        assertThat(family("restore", "g.snap", "--mode=LAZY", "--verify")).isEqualTo("restore-lazy");
        assertThat(family("restore", "--mode", "Lazy", "g.snap")).isEqualTo("restore-lazy");
        // a file named lazy is not a mode
        assertThat(family("restore", "lazy", "--export", "out.mem")).isEqualTo("restore");
        // a command without a family of its own is named as it is; the launcher then uses all.aot
        assertThat(family("fc-handler", "--help")).isEqualTo("fc-handler");
        // a word that is no command name never becomes a path
        assertThat(family("../../etc/x")).isEqualTo("all");
        assertThat(family("Restore")).isEqualTo("all");
        // help prints what --help prints
        assertThat(family("help")).isEqualTo("main");
        assertThat(family("help", "restore")).isEqualTo("main");
        // a mode only as an option: not after --, not inside another argument
        assertThat(family("restore", "a.snap", "--", "--mode", "lazy")).isEqualTo("restore");
        assertThat(family("restore", "/tmp/a --mode=lazy")).isEqualTo("restore");
    }

    /** Runs the choice in bash on {@code args}, as the launcher does; the family it named. */
    private static String family(String... args) throws IOException, InterruptedException {
        return LauncherScript.answer(FAMILY, "gmem_aot_family", "gmem_family", args);
    }
}
