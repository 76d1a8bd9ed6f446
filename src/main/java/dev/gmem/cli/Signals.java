package dev.gmem.cli;

import dev.gmem.util.OutputFile;
import sun.misc.Signal;

/**
 * SIGINT and SIGTERM: stop at once, remove every partial output file (no later commit succeeds),
 * say so in one line, and exit with 128 plus the signal's number (130, 143), as shells expect.
 * Guest memory, mappings and userfaultfd registrations of this process go with it.
 */
final class Signals {
    private Signals() {}

    static void install() {
        for (String name : new String[] {"INT", "TERM"}) {
            try {
                Signal.handle(new Signal(name), Signals::interrupted);
            } catch (IllegalArgumentException notAllowed) {
                // the JVM keeps this signal (-Xrs): its default action stays
            }
        }
    }

    private static void interrupted(Signal s) {
        OutputFile.abandonAll();
        System.err.println("gmem: interrupted (SIG" + s.getName() + "); partial output files removed");
        System.err.flush();
        Runtime.getRuntime().halt(128 + s.getNumber());
    }
}
