package dev.gmem.linux;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Test;

class ErrnoTest {
    @Test
    void symbolsCarryTheLinuxNumbers() {
        assertThat(Errno.EPERM.number()).isEqualTo(1);
        assertThat(Errno.ENOENT.number()).isEqualTo(2);
        assertThat(Errno.EINTR.number()).isEqualTo(4);
        assertThat(Errno.EBADF.number()).isEqualTo(9);
        assertThat(Errno.EAGAIN.number()).isEqualTo(11);
        assertThat(Errno.EFAULT.number()).isEqualTo(14);
        assertThat(Errno.EEXIST.number()).isEqualTo(17);
        assertThat(Errno.ENODEV.number()).isEqualTo(19);
        assertThat(Errno.EINVAL.number()).isEqualTo(22);
        assertThat(Errno.ENOTTY.number()).isEqualTo(25);
        assertThat(Errno.ENOSPC.number()).isEqualTo(28);
        assertThat(Errno.ESPIPE.number()).isEqualTo(29);
        assertThat(Errno.ENOSYS.number()).isEqualTo(38);
        assertThat(Errno.EOPNOTSUPP.number()).isEqualTo(95);
        assertThat(Errno.EHWPOISON.number()).isEqualTo(133);
    }

    @Test
    void numbersMapBackToSymbolsAndUnknownNumbersAreSaidAsNumbers() {
        for (Errno e : Errno.values()) assertThat(Errno.of(e.number())).contains(e);
        assertThat(Errno.count()).isEqualTo(Errno.values().length);
        assertThat(Errno.of(0)).isEmpty();
        assertThat(Errno.of(-1)).isEmpty();
        assertThat(Errno.of(4242)).isEmpty();
        assertThat(Errno.name(28)).isEqualTo("ENOSPC");
        assertThat(Errno.name(4242)).isEqualTo("errno 4242");
        assertThat(Errno.ENOSPC.message()).isEqualTo("No space left on device");
    }

    @Test
    void exceptionNamesCallArgumentsAndSymbol() {
        SyscallException e = new SyscallException("pwrite", "fd=7, off=4096, len=4096", Errno.ENOSPC);
        assertThat(e).hasMessage("pwrite(fd=7, off=4096, len=4096): ENOSPC (No space left on device)");
        assertThat(e.errno()).contains(Errno.ENOSPC);
        assertThat(e.is(Errno.ENOSPC)).isTrue();
        assertThat(e.is(Errno.EINVAL)).isFalse();
        assertThat(new SyscallException("ioctl X", "", 4242)).hasMessage("ioctl X(): errno 4242");
    }

    @Test
    void aRealFailureReportsItsErrno() throws Exception {
        assertThatThrownBy(() -> Fd.open(Path.of("/nonexistent/gmem"), Linux.O_RDONLY, 0))
                .isInstanceOfSatisfying(SyscallException.class, e -> {
                    assertThat(e.errno()).contains(Errno.ENOENT);
                    assertThat(e.call()).isEqualTo("open");
                    assertThat(e.getMessage()).contains("/nonexistent/gmem").contains("ENOENT");
                });
        try (Fd memfd = Fd.memfd("gmem-errno", Linux.MFD_CLOEXEC)) {
            assertThatThrownBy(() -> memfd.ioctl("BOGUS", 0x1234, 0L))
                    .isInstanceOfSatisfying(
                            SyscallException.class, e -> assertThat(e.errno()).contains(Errno.ENOTTY));
        }
    }

    /**
     * errno is captured per call and per thread: threads failing with different errors at the same
     * moment, interleaved with successful calls, each see their own errno every time.
     */
    @Test
    void errnoIsPerThreadUnderConcurrency() throws Exception {
        int threads = 8;
        int rounds = 2_000;
        CyclicBarrier start = new CyclicBarrier(threads);
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try (Fd memfd = Fd.memfd("gmem-errno-threads", Linux.MFD_CLOEXEC)) {
            memfd.truncate(Posix.pageSize());
            List<Future<Integer>> results = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int kind = t % 4;
                Callable<Integer> task = () -> {
                    start.await();
                    int checked = 0;
                    for (int i = 0; i < rounds; i++) {
                        Errno expected;
                        try {
                            switch (kind) {
                                case 0 -> Fd.open(Path.of("/nonexistent/gmem"), Linux.O_RDONLY, 0);
                                case 1 -> memfd.ioctl("BOGUS", 0x1234, 0L);
                                case 2 -> memfd.fallocate(Linux.FALLOC_FL_ZERO_RANGE | 0x20, 0, 4096);
                                default -> memfd.lseek(-1, Linux.SEEK_SET);
                            }
                            throw new AssertionError("call did not fail");
                        } catch (SyscallException e) {
                            expected = switch (kind) {
                                case 0 -> Errno.ENOENT;
                                case 1 -> Errno.ENOTTY;
                                case 2 -> Errno.EOPNOTSUPP;
                                default -> Errno.EINVAL;
                            };
                            assertThat(e.errno())
                                    .as("thread kind %d round %d", kind, i)
                                    .contains(expected);
                            checked++;
                        }
                        memfd.lseek(0, Linux.SEEK_SET); // a success in between must not disturb the next capture
                    }
                    return checked;
                };
                results.add(pool.submit(task));
            }
            for (Future<Integer> f : results) assertThat(f.get()).isEqualTo(rounds);
        } finally {
            pool.shutdownNow();
        }
    }
}
