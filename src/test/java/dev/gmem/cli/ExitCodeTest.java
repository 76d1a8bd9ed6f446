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
        assertThat(ExitCode.of(efbig)).as("an errno is no type of its own").isEqualTo(ExitCode.FAILED);
        var limit = new dev.gmem.util.HostLimitException("x: the file system holds no file of 4 PiB", efbig);
        assertThat(ExitCode.of(limit)).isEqualTo(ExitCode.UNSUPPORTED);
        assertThat(ExitCode.of(new IOException("unpack", limit))).isEqualTo(ExitCode.UNSUPPORTED);
        assertThat(ExitCode.of(new SyscallException("pwrite", "len=4096", Errno.ENOSPC)))
                .isEqualTo(ExitCode.FAILED);
        assertThat(ExitCode.of(new UnsupportedFeatureException("memfd", "keeping the guest's page state", "why")))
                .isEqualTo(ExitCode.UNSUPPORTED);
        var bad = new SnapshotFormatException(Path.of("x.snap"), "bad magic", limit);
        assertThat(ExitCode.of(bad)).as("the outer typed error decides").isEqualTo(ExitCode.BAD_INPUT);
        assertThat(ExitCode.of(new IOException("more than the heap")))
                .as("never the text")
                .isEqualTo(ExitCode.FAILED);
        assertThat(ExitCode.UNSUPPORTED.status).isEqualTo(3);
    }
}
