package dev.gmem.linux;

/**
 * Process descriptors (pidfd_open(2), pidfd_send_signal(2)): a signal sent through one reaches the
 * process it was opened for, never another that took its pid after it exited. The system call
 * numbers are the same on every architecture (both came after the tables were unified).
 */
public final class Pidfds {
    /** SIGKILL. */
    public static final int SIGKILL = 9;

    private Pidfds() {}

    /** A descriptor for process {@code pid}; ESRCH if it has exited. */
    public static Fd open(int pid) throws SyscallException {
        long fd = Posix.syscall(Sys.PIDFD_OPEN, pid, 0);
        return Fd.adopt((int) fd, "pidfd of process " + pid);
    }

    /**
     * A copy of descriptor {@code targetFd} of the process of {@code pidfd} (pidfd_getfd(2)),
     * close-on-exec; needs ptrace rights over that process (EPERM otherwise: root, CAP_SYS_PTRACE,
     * or the same user under Yama's default scope for a descendant).
     */
    public static Fd getfd(Fd pidfd, int targetFd, String name) throws SyscallException {
        long fd = Posix.syscall(Sys.PIDFD_GETFD, pidfd.number(), targetFd, 0);
        return Fd.adopt((int) fd, name);
    }

    /** Sends {@code signal} to the process of {@code pidfd}; ESRCH if it has exited meanwhile. */
    public static void signal(Fd pidfd, int signal) throws SyscallException {
        Posix.syscall(Sys.PIDFD_SEND_SIGNAL, pidfd.number(), signal, 0, 0);
    }
}
