package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.linux.Errno;
import dev.gmem.linux.SyscallException;
import dev.gmem.memory.UnsupportedFeatureException;
import dev.gmem.snapshot.SnapshotFormatException;
import java.io.IOException;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The exit status follows the type of the error and of its causes, never its text. */
class ExitCodeTest {
    @Test
    void eachTypeHasItsStatusAndTheFirstTypedCauseDecides() {
        var efbig = new SyscallException("ftruncate", "size=4503599627370496", Errno.EFBIG);
        assertThat(ExitCode.of(efbig)).isEqualTo(ExitCode.UNSUPPORTED);
        assertThat(ExitCode.of(new IOException("unpack", efbig))).isEqualTo(ExitCode.UNSUPPORTED);
        assertThat(ExitCode.of(new SyscallException("pwrite", "len=4096", Errno.ENOSPC)))
                .isEqualTo(ExitCode.FAILED);
        assertThat(ExitCode.of(new UnsupportedFeatureException("memfd", "keeping the guest's page state", "why")))
                .isEqualTo(ExitCode.UNSUPPORTED);
        var bad = new SnapshotFormatException(Path.of("x.snap"), "bad magic", efbig);
        assertThat(ExitCode.of(bad)).as("the outer typed error decides").isEqualTo(ExitCode.BAD_INPUT);
        assertThat(ExitCode.of(new IOException("EFBIG"))).as("never the text").isEqualTo(ExitCode.FAILED);
        assertThat(ExitCode.UNSUPPORTED.status).isEqualTo(3);
    }
}
