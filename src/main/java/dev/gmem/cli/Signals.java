package dev.gmem.cli;

import dev.gmem.util.OutputFile;
import sun.misc.Signal;

/**
 * SIGINT, SIGTERM and SIGHUP: stop at once, remove every partial output file (no later commit succeeds),
 * say so in one line, and exit with 128 plus the signal's number (130, 143, 129), as shells expect.
 * Guest memory, mappings and userfaultfd registrations of this process go with it.
 */
final class Signals {
    private Signals() {}

    static void install() {
        for (String name : new String[] {"INT", "TERM", "HUP"}) {
            try {
                Signal.handle(new Signal(name), Signals::interrupted);
            } catch (IllegalArgumentException notAllowed) {
                // the JVM keeps this signal (-Xrs): its default action stays
            }
        }
    }

    private static final java.util.concurrent.atomic.AtomicBoolean ONCE = new java.util.concurrent.atomic.AtomicBoolean();

    private static void interrupted(Signal s) {
        if (!ONCE.compareAndSet(false, true)) return; // a second signal while the first is handled: nothing more to do
        OutputFile.abandonAll();
        // a progress line may be on the terminal: start a fresh line
        System.err.println((dev.gmem.linux.Posix.isTerminal(2) ? "\r\033[K" : "") + "gmem: interrupted (SIG" + s.getName() + "); partial output files removed");
        System.err.flush();
        Runtime.getRuntime().halt(128 + s.getNumber());
    }
}
