package dev.gmem.cli;

import java.io.PrintStream;
import java.util.function.Consumer;

/** One progress line on the terminal, rewritten in place; silent when stderr is not a terminal or with --json. */
final class Progress implements Consumer<String>, AutoCloseable {
    /** Asked of stderr itself: progress goes there, whatever stdout is. */
    private static final boolean STDERR_IS_TERMINAL = dev.gmem.linux.Posix.isTerminal(2);

    private final PrintStream err = System.err;
    private final boolean enabled;
    private int lastLength;

    Progress(boolean json) {
        this.enabled = !json && STDERR_IS_TERMINAL;
    }

    @Override
    public void accept(String line) {
        if (!enabled) return;
        String padded = line.length() < lastLength ? line + " ".repeat(lastLength - line.length()) : line;
        err.print("\r" + padded);
        err.flush();
        lastLength = line.length();
    }

    @Override
    public void close() {
        if (enabled && lastLength > 0) {
            err.print("\r" + " ".repeat(lastLength) + "\r");
            err.flush();
        }
    }
}
