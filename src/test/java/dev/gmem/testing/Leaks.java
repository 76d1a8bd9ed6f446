package dev.gmem.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/** What this process holds, read from /proc, to assert that code releases what it opens. */
public final class Leaks {
    private Leaks() {}

    /** Open descriptors of this process. */
    public static long openFds() {
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            return s.count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Whether descriptor {@code n} is open. */
    public static boolean isOpen(int n) {
        return Files.exists(Path.of("/proc/self/fd/" + n));
    }

    /** Whether any mapping of this process covers {@code address}. */
    public static boolean isMapped(long address) {
        try (Stream<String> lines = Files.lines(Path.of("/proc/self/maps"))) {
            return lines.anyMatch(line -> {
                String range = line.substring(0, line.indexOf(' '));
                int dash = range.indexOf('-');
                long start = Long.parseUnsignedLong(range.substring(0, dash), 16);
                long end = Long.parseUnsignedLong(range.substring(dash + 1), 16);
                return Long.compareUnsigned(address, start) >= 0 && Long.compareUnsigned(address, end) < 0;
            });
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Mappings of this process whose line mentions {@code text} (e.g. "memfd:gmem-test"). */
    public static long mappingsNamed(String text) {
        try (Stream<String> lines = Files.lines(Path.of("/proc/self/maps"))) {
            return lines.filter(l -> l.contains(text)).count();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Partial output files ({@code NAME.partial.PID.RANDOM}) in {@code dir}. */
    public static java.util.List<java.nio.file.Path> partials(java.nio.file.Path dir) throws java.io.IOException {
        try (var files = java.nio.file.Files.list(dir)) {
            return files.filter(p -> p.getFileName().toString().contains(".partial."))
                    .toList();
        }
    }
}
