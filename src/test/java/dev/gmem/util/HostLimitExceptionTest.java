package dev.gmem.util;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.SyscallException;
import java.nio.file.Path;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Sizing an output file: a file system's own size limit (EFBIG) is a host limit, any other failure what it was. */
class HostLimitExceptionTest {
    @TempDir
    Path dir;

    @Test
    void aFileLargerThanTheFileSystemHoldsIsAHostLimit() throws Exception {
        Path p = dir.resolve("big");
        long huge = 1L << 52; // 4 PiB, the largest guest the snapshot format allows
        try (Fd fd = Fd.open(p, Linux.O_RDWR | Linux.O_CREAT | Linux.O_EXCL | Linux.O_CLOEXEC, 0600)) {
            boolean held;
            try {
                fd.truncate(huge);
                held = true;
            } catch (SyscallException e) {
                if (!e.is(Errno.EFBIG)) throw e;
                held = false;
            }
            Assumptions.assumeFalse(
                    held, "skipped: " + dir + "'s file system holds a 4 PiB file, so nothing here is refused");
            assertThatThrownBy(() -> HostLimitException.truncate(fd, huge))
                    .isInstanceOf(HostLimitException.class)
                    .hasMessage(p + ": the file system holds no file of " + huge + " bytes (EFBIG, File too large)")
                    .hasCauseInstanceOf(SyscallException.class);
            // any other failure is what it was
            assertThatThrownBy(() -> HostLimitException.truncate(fd, -1))
                    .isInstanceOf(SyscallException.class)
                    .isNotInstanceOf(HostLimitException.class);
        }
    }
}
