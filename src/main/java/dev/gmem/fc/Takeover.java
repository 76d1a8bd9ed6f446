package dev.gmem.fc;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Pidfds;
import dev.gmem.linux.SyscallException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

/**
 * Taking a VM over from a handler that died: the VMM's identity (its start time, so that a pid
 * reused by another program is told apart) and a new copy of its userfaultfd, taken from the
 * VMM itself with {@code pidfd_getfd(2)}, which needs ptrace rights over it (root, or
 * CAP_SYS_PTRACE).
 */
public final class Takeover {
    private static final String USERFAULTFD = "anon_inode:[userfaultfd]";

    private Takeover() {}

    /** When process {@code pid} started, in clock ticks since boot ({@code /proc/PID/stat}, field 22). */
    public static long startTime(int pid) throws IOException {
        String stat = Files.readString(Path.of("/proc/" + pid + "/stat"));
        String[] after = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
        return Long.parseLong(after[19]); // fields from the third on: the 22nd is index 19
    }

    /** Whether this process may take descriptors from others: root, or CAP_SYS_PTRACE in its effective set. */
    public static boolean mayTakeDescriptors() {
        try {
            for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
                if (l.startsWith("CapEff:"))
                    return (Long.parseUnsignedLong(l.substring(7).strip(), 16) & (1L << 19)) != 0;
            }
        } catch (IOException | NumberFormatException e) {
            return false;
        }
        return false;
    }

    /**
     * A copy of the VMM's userfaultfd: the one descriptor of process {@code pid} (whose pidfd is
     * {@code pidfd}) that is a userfaultfd.
     *
     * @throws IOException when it has none, or several (it is then unclear which is the VM's), or
     *     when this process may not take it (EPERM)
     */
    public static Fd userfaultfd(Fd pidfd, int pid) throws IOException {
        List<Integer> found = new ArrayList<>();
        try (Stream<Path> fds = Files.list(Path.of("/proc/" + pid + "/fd"))) {
            for (Path p : fds.toList()) {
                try {
                    if (Files.readSymbolicLink(p).toString().equals(USERFAULTFD))
                        found.add(Integer.parseInt(p.getFileName().toString()));
                } catch (IOException | NumberFormatException gone) {
                    // closed meanwhile
                }
            }
        }
        if (found.size() != 1)
            throw new IOException("process " + pid + " has " + found.size() + " userfaultfds, not one");
        Fd fd;
        try {
            fd = Pidfds.getfd(pidfd, found.getFirst(), "userfaultfd of process " + pid);
        } catch (SyscallException e) {
            throw new IOException("pidfd_getfd: " + e.errnoText()
                    + (e.is(dev.gmem.linux.Errno.EPERM) ? " (it needs ptrace rights: root or CAP_SYS_PTRACE)" : ""));
        }
        try {
            if (!Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd.number()))
                    .toString()
                    .equals(USERFAULTFD))
                throw new IOException("descriptor " + found.getFirst() + " of process " + pid + " changed meanwhile");
        } catch (IOException e) {
            fd.closeQuietly();
            throw e;
        }
        return fd;
    }
}
