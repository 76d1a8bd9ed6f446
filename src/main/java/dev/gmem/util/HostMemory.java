package dev.gmem.util;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;

/**
 * This host's memory as this process may use it: /proc/meminfo, capped by the memory limits of the
 * process's cgroup (v2's memory.max and memory.swap.max, or v1's memory.limit_in_bytes), so that
 * in a container the container's limit counts.
 */
public final class HostMemory {
    private HostMemory() {}

    /** MemAvailable in bytes, or 0 when it cannot be read. */
    public static long available() {
        return field("MemAvailable:");
    }

    /**
     * The most memory a restore into memory could ever hold, in bytes (0: unknown): MemTotal, plus
     * SwapTotal when the memory can be swapped (a memfd's shmem pages can; guest_memfd's cannot),
     * capped by the cgroup's limits.
     */
    public static long capacity(boolean swappable) {
        long total = field("MemTotal:");
        if (total == 0) return 0;
        long swap = swappable ? field("SwapTotal:") : 0;
        long memoryLimit = cgroupLimit("memory.max", "memory.limit_in_bytes");
        long swapLimit = swappable ? cgroupLimit("memory.swap.max", null) : 0;
        return Math.min(total, memoryLimit) + Math.min(swap, swapLimit);
    }

    private static long field(String name) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith(name))
                    return Long.parseLong(line.substring(name.length()).replaceAll("\\D", "")) * 1024;
            }
        } catch (IOException | NumberFormatException e) {
            // unknown: the caller checks nothing
        }
        return 0;
    }

    /** The limit in the v2 file {@code v2} or the v1 memory controller's file {@code v1} of this process's cgroup; Long.MAX_VALUE when none. */
    private static long cgroupLimit(String v2, String v1) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/cgroup"))) {
                String[] f = line.split(":", 3);
                if (f.length < 3) continue;
                Path file = null;
                if (f[0].equals("0") && f[1].isEmpty()) file = Path.of("/sys/fs/cgroup", f[2], v2);
                else if (v1 != null && List.of(f[1].split(",")).contains("memory"))
                    file = Path.of("/sys/fs/cgroup/memory", f[2], v1);
                if (file == null || !Files.isReadable(file)) continue;
                String value = Files.readString(file).strip();
                if (!value.equals("max") && !value.isEmpty()) return Long.parseLong(value);
            }
        } catch (IOException | NumberFormatException | java.nio.file.InvalidPathException e) {
            // unknown: no limit
        }
        return Long.MAX_VALUE;
    }
}
