package dev.gmem.linux;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

/** gmem's system call numbers are the kernel's: checked against its headers, and by calling them. */
class SysTest {
    private static final Pattern DEFINE = Pattern.compile("#define\\s+__NR(?:3264)?_(\\w+)\\s+(\\d+)\\b");

    /** {@code __NR_name} (or the 64-bit {@code __NR3264_name}) to its number, from a header. */
    private static Map<String, Long> numbers(Path header) throws IOException {
        Map<String, Long> out = new HashMap<>();
        Matcher m = DEFINE.matcher(Files.readString(header));
        while (m.find()) out.putIfAbsent(m.group(1), Long.parseLong(m.group(2)));
        return out;
    }

    private static Path header(List<String> candidates, String what) {
        for (String c : candidates) {
            if (Files.isReadable(Path.of(c))) return Path.of(c);
        }
        Assumptions.abort(
                "no " + what + " here (the kernel's headers, Debian package linux-libc-dev): looked at " + candidates);
        return null;
    }

    @Test
    void x86NumbersAreTheKernels() throws IOException {
        // asm/unistd_64.h is x86_64's only on an x86_64 machine (aarch64's headers have one of their own)
        List<String> headers = List.of("/usr/include/x86_64-linux-gnu/asm/unistd_64.h");
        if (List.of("amd64", "x86_64").contains(System.getProperty("os.arch")))
            headers = List.of(headers.get(0), "/usr/include/asm/unistd_64.h");
        Map<String, Long> kernel = numbers(header(headers, "x86_64 system call table"));
        for (Sys s : Sys.values()) assertThat(s.x86_64).as(s.call()).isEqualTo(kernel.get(s.call()));
    }

    @Test
    void aarch64NumbersAreTheKernels() throws IOException {
        Map<String, Long> kernel =
                numbers(header(List.of("/usr/include/asm-generic/unistd.h"), "generic (aarch64) system call table"));
        for (Sys s : Sys.values()) assertThat(s.aarch64).as(s.call()).isEqualTo(kernel.get(s.call()));
    }

    /** The names are the manual pages' (they appear in every error message). */
    @Test
    void callsAreNamedAsTheirManualPages() {
        assertThat(Sys.PWRITE64.call()).isEqualTo("pwrite64");
        assertThat(Sys.MEMFD_CREATE.call()).isEqualTo("memfd_create");
        for (Sys s : Sys.values()) assertThat(s.call()).isEqualTo(s.name().toLowerCase(Locale.ROOT));
    }

    /** One call through the shared downcall on this machine: the kernel answers, and errno is captured. */
    @Test
    void aCallReachesTheKernelAndItsErrnoIsCaptured() {
        java.lang.foreign.MemorySegment st = Native.callState();
        assertThat(Native.syscall(st, Sys.GETTID)).isPositive();
        assertThat(Native.syscall(st, Sys.CLOSE, -1)).isEqualTo(-1);
        assertThat(Native.errno(st)).isEqualTo(Errno.EBADF.number());
        assertThat(Native.criticalSyscall(st, Sys.MUNMAP, 1, 4096, 0)).isEqualTo(-1); // not page-aligned
        assertThat(Native.errno(st)).isEqualTo(Errno.EINVAL.number());
    }
}
