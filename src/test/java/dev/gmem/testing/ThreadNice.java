package dev.gmem.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import java.util.TreeMap;

/** The nice values of this process's threads, as the kernel holds them ({@code /proc/self/task}). */
public final class ThreadNice {
    private ThreadNice() {}

    /** "TID NAME" to nice, for each live thread whose name starts with {@code prefix}. */
    public static Map<String, Integer> ofThreadsNamed(String prefix) throws IOException {
        Map<String, Integer> out = new TreeMap<>();
        try (var tasks = Files.list(Path.of("/proc/self/task"))) {
            for (Path t : (Iterable<Path>) tasks::iterator) {
                String comm;
                String stat;
                try {
                    comm = Files.readString(t.resolve("comm")).strip();
                    stat = Files.readString(t.resolve("stat"));
                } catch (IOException gone) {
                    continue; // the thread ended meanwhile
                }
                if (!comm.startsWith(prefix)) continue;
                // after the name in parentheses: state is field 3, nice field 19
                String[] f = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
                out.put(t.getFileName() + " " + comm, Integer.parseInt(f[19 - 3]));
            }
        }
        return out;
    }
}
