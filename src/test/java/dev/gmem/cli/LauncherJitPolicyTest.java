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

    @Test
    void shortCommandsStartLighterAndLongOnesKeepTheJvmDefaults() throws Exception {
        String light = "-XX:-UsePerfData -Djdk.reflect.useNativeAccessorOnly=true";
        String c1 = light + " -XX:TieredStopAtLevel=1";
        String noReplay = c1 + " -XX:+UnlockDiagnosticVMOptions -XX:-AOTReplayTraining";
        assertThat(startOptions("1", "1", "1", "restore", "/dev/shm/g.snap", "--json"))
                .isEqualTo(noReplay);
        assertThat(startOptions("1", "1", "1", "--version")).isEqualTo(noReplay);
        // the profiles stay when there is no cache, or the training found the option refused
        assertThat(startOptions("1", "0", "1", "probe")).isEqualTo(c1);
        assertThat(startOptions("1", "1", "0", "probe")).isEqualTo(c1);
        // a JIT of the user's own: no compiler choice, and the profiles stay for it
        assertThat(startOptions("0", "1", "1", "probe")).isEqualTo(light);
        for (String[] longOne : List.of(
                new String[] {"serve", "--snapshot", "g.snap"},
                new String[] {"bench", "start"},
                new String[] {"restore", "tcp://127.0.0.1:9", "--mode", "lazy"},
                new String[] {"restore", "g.snap", "--metrics", "127.0.0.1:9400"}))
            assertThat(startOptions("1", "1", "1", longOne))
                    .as(String.join(" ", longOne))
                    .isEmpty();
    }

    /** The policy's start options for a command, as the launcher gets them, space-separated. */
    private static String startOptions(String ownJit, String cached, String noReplay, String... args)
            throws IOException, InterruptedException {
        String[] all = new String[args.length + 3];
        all[0] = ownJit;
        all[1] = cached;
        all[2] = noReplay;
        System.arraycopy(args, 0, all, 3, args.length);
        return LauncherScript.answer(POLICY, "gmem_start_options", "{gmem_start_opts[*]}", all);
    }

    /** Runs the policy in bash on {@code args}, as the launcher does; true when it chose both compilers. */
    private static boolean fullJit(String... args) throws IOException, InterruptedException {
        String said = LauncherScript.answer(POLICY, "gmem_jit_policy", "gmem_full_jit", args);
        assertThat(said).isIn("0", "1");
        return said.equals("1");
    }
}
