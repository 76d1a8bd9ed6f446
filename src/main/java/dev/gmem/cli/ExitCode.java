package dev.gmem.cli;

import dev.gmem.memory.UnsupportedFeatureException;
import dev.gmem.snapshot.SnapshotFormatException;

/**
 * gmem's exit statuses, chosen by the type of the error (and of its causes), never by its text:
 * 0 done; 1 failed (an I/O or system call error, a restore that failed or differs from its source,
 * a guest check that failed); 2 the command line is wrong (a QEMU command that does not fit its
 * snapshot included); 3 this host, or the VM, lacks what the command needs, or cannot hold what a
 * sound input asks for (the reason is printed); 4 the input is corrupt or not what it claims (a
 * snapshot, a memory file or a trace).
 */
enum ExitCode {
    OK(0),
    FAILED(1),
    USAGE(2),
    UNSUPPORTED(3),
    BAD_INPUT(4);

    final int status;

    ExitCode(int status) {
        this.status = status;
    }

    /** The status for an error: the first of its causes (itself first) whose type has one of its own. */
    static ExitCode of(Throwable error) {
        for (Throwable t = error; t != null; t = t.getCause() == t ? null : t.getCause()) {
            switch (t) {
                case SnapshotFormatException e -> {
                    return BAD_INPUT;
                }
                case dev.gmem.trace.TraceFormatException e -> {
                    return BAD_INPUT;
                }
                case UnsupportedFeatureException e -> {
                    return UNSUPPORTED;
                }
                case dev.gmem.store.StoreFormatException e -> {
                    return BAD_INPUT;
                }
                case dev.gmem.util.HostLimitException e -> {
                    return UNSUPPORTED;
                }
                case dev.gmem.qemu.QemuRam.NotShareableException e -> {
                    return UNSUPPORTED;
                }
                case dev.gmem.qemu.QemuArgs.RefusedException e -> {
                    return USAGE;
                }
                default -> {}
            }
        }
        return FAILED;
    }
}
