package dev.gmem.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.stream.Stream;

/** What this process holds, read from /proc, to assert that code releases what it opens. */
public final class Leaks {
    private Leaks() {}

    /**
     * The descriptors this process holds now, to compare with later by {@link Fds#opened}: by
     * number and file, not by count, so that a descriptor another thread of the test JVM closes
     * meanwhile (a reaped child's pipe, say) hides no leak and makes none up.
     */
    public static Fds fds() {
        return new Fds(openNow());
    }

    /** Descriptors by number, each with what it is open on ({@code /proc/self/fd/N}'s link). */
    public record Fds(java.util.Map<Integer, String> open) {
        /**
         * The descriptors open now that were not then (a number not open then, or open on another
         * file), as "N -> file", after up to 2 s for closes that other threads are making to land.
         */
        public java.util.List<String> opened() {
            long deadline = System.nanoTime() + 2_000_000_000L;
            while (true) {
                java.util.List<String> out = new java.util.ArrayList<>();
                openNow().forEach((n, file) -> {
                    if (!file.equals(open.get(n))) out.add(n + " -> " + file);
                });
                if (out.isEmpty() || System.nanoTime() > deadline) return out;
                try {
                    Thread.sleep(20);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return out;
                }
            }
        }
    }

    private static java.util.Map<Integer, String> openNow() {
        java.util.Map<Integer, String> out = new java.util.TreeMap<>();
        String self = "/proc/" + ProcessHandle.current().pid() + "/fd";
        try (Stream<Path> s = Files.list(Path.of("/proc/self/fd"))) {
            for (Path p : (Iterable<Path>) s::iterator) {
                String file;
                try {
                    file = Files.readSymbolicLink(p).toString();
                } catch (IOException e) {
                    continue; // closed while listed
                }
                if (file.equals(self)) continue; // the listing's own descriptor
                out.put(Integer.parseInt(p.getFileName().toString()), file);
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return out;
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
