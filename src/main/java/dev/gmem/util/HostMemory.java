package dev.gmem.util;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** This host's memory, as /proc/meminfo says: what a restore into memory can ever hold, and what is free now. */
public final class HostMemory {
    private HostMemory() {}

    /** MemAvailable in bytes, or 0 when it cannot be read. */
    public static long available() {
        return field("MemAvailable:");
    }

    /** MemTotal plus SwapTotal in bytes (shmem pages can be swapped out), or 0 when they cannot be read. */
    public static long capacity() {
        long total = field("MemTotal:");
        return total == 0 ? 0 : total + field("SwapTotal:");
    }

    private static long field(String name) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/meminfo"))) {
                if (line.startsWith(name)) return Long.parseLong(line.substring(name.length()).replaceAll("\\D", "")) * 1024;
            }
        } catch (IOException | NumberFormatException e) {
            // unknown: the caller checks nothing
        }
        return 0;
    }
}
