package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * The launcher's choice of JIT, from {@code build/jit-policy.sh} (the file the launcher sources),
 * run by bash: short commands get the client compiler alone; the daemons, the benchmarks and
 * anything fed from a network or a store get both compilers (TLS and SHA-256 crawl without the
 * server compiler).
 */
@Timeout(60)
class LauncherJitPolicyTest {
    private static final Path POLICY = Path.of("build/jit-policy.sh");

    @Test
    void shortLocalCommandsRunOnTheClientCompilerAlone() throws Exception {
        assertThat(fullJit()).isFalse();
        assertThat(fullJit("--version")).isFalse();
        assertThat(fullJit("probe", "--json")).isFalse();
        assertThat(fullJit("restore", "/dev/shm/g.snap", "--json")).isFalse();
        assertThat(fullJit("restore", "/dev/shm/g.snap", "--mode", "lazy")).isFalse();
        assertThat(fullJit("snapshot", "pack", "in.raw", "-o", "out.snap")).isFalse();
        assertThat(fullJit("qemu", "restore", "vm.snap")).isFalse();
    }

    @Test
    void daemonsAndBenchmarksGetBothCompilers() throws Exception {
        for (String command : List.of("serve", "fc-handler", "fc-keeper", "bench", "demo"))
            assertThat(fullJit(command, "--help")).as(command).isTrue();
        assertThat(fullJit("restore", "g.snap", "--mode", "lazy", "--metrics", "127.0.0.1:9400"))
                .isTrue();
        assertThat(fullJit("restore", "g.snap", "--metrics=127.0.0.1:9400")).isTrue();
    }

    @Test
    void workFedFromANetworkOrAStoreGetsBothCompilers() throws Exception {
        assertThat(fullJit("restore", "tcp://10.0.0.1:7400", "--export", "/dev/shm/vm.mem"))
                .isTrue();
        assertThat(fullJit("restore", "s3://bucket/prefix/vm", "--mode", "lazy"))
                .isTrue();
        assertThat(fullJit("snapshot", "push", "vm.snap", "s3://bucket/prefix/vm"))
                .isTrue();
        assertThat(fullJit("snapshot", "pull", "--from=s3://bucket/prefix/vm")).isTrue();
        assertThat(fullJit("store", "gc", "s3://bucket/prefix/")).isTrue();
        // an argument that merely has a scheme inside it is not a source
        assertThat(fullJit("restore", "/dev/shm/a.snap", "--export=/x/tcp://y")).isFalse();
        assertThat(fullJit("restore", "/x/s3://y.snap")).isFalse();
    }

    /** Runs the policy in bash on {@code args}, as the launcher does; true when it chose both compilers. */
    private static boolean fullJit(String... args) throws IOException, InterruptedException {
        String said = LauncherScript.answer(POLICY, "gmem_jit_policy", "gmem_full_jit", args);
        assertThat(said).isIn("0", "1");
        return said.equals("1");
    }
}
