package dev.gmem.cli;

import dev.gmem.util.OutputFile;
import java.lang.reflect.Proxy;

/**
 * SIGINT, SIGTERM and SIGHUP: stop at once, remove every partial output file (no later commit succeeds),
 * say so in one line, and exit with 128 plus the signal's number (130, 143, 129), as shells expect.
 * Guest memory, mappings and userfaultfd registrations of this process go with it.
 */
final class Signals {
    private Signals() {}

    /**
     * sun.misc.Signal (module jdk.unsupported) is reached by reflection: javac's "internal
     * proprietary API" warning cannot be suppressed in the source, and the build treats warnings as
     * errors. It is the one supported way for Java code to handle these signals.
     */
    static void install() {
        try {
            Class<?> signal = Class.forName("sun.misc.Signal");
            Class<?> handlerType = Class.forName("sun.misc.SignalHandler");
            Object handler = Proxy.newProxyInstance(
                    Signals.class.getClassLoader(), new Class<?>[] {handlerType}, (proxy, method, args) -> {
                        if (method.getName().equals("handle")) {
                            Object s = args[0];
                            interrupted((String) signal.getMethod("getName").invoke(s), (int)
                                    signal.getMethod("getNumber").invoke(s));
                        }
                        return null;
                    });
            for (String name : new String[] {"INT", "TERM", "HUP"}) {
                try {
                    signal.getMethod("handle", signal, handlerType)
                            .invoke(null, signal.getConstructor(String.class).newInstance(name), handler);
                } catch (java.lang.reflect.InvocationTargetException notAllowed) {
                    // the JVM keeps this signal (-Xrs): its default action stays
                }
            }
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException("cannot install signal handlers: " + e, e);
        }
    }

    private static final java.util.concurrent.atomic.AtomicBoolean ONCE =
            new java.util.concurrent.atomic.AtomicBoolean();

    /** A daemon's orderly stop, run instead of the default one; it returns the exit status. */
    @FunctionalInterface
    interface Stop {
        int stop(String signal);
    }

    private static volatile Stop daemon;

    /**
     * For a daemon: SIGINT, SIGTERM and SIGHUP then run {@code stop} (once, on the signal's thread)
     * and exit with the status it returns, instead of exiting at once with 128 + n. Partial output
     * files are removed first, as always.
     */
    static void onStop(Stop stop) {
        daemon = stop;
    }

    /**
     * The command is done and about to exit with its own status: a signal from now on is ignored
     * (it would claim an interruption after the work was complete). If a signal is being handled
     * already, its handler ends the process: this thread waits for that.
     */
    static void finishing() {
        if (ONCE.compareAndSet(false, true)) return;
        while (true) {
            try {
                Thread.sleep(1000);
            } catch (InterruptedException e) {
                // the handler halts the process
            }
        }
    }

    private static void interrupted(String name, int number) {
        if (!ONCE.compareAndSet(false, true)) return; // a second signal while the first is handled: nothing more to do
        Stop d = daemon;
        if (d != null) {
            OutputFile.abandonAll();
            int status = 1;
            try {
                status = d.stop("SIG" + name);
            } finally {
                System.out.flush();
                System.err.flush();
                Runtime.getRuntime().halt(status);
            }
        }
        OutputFile.abandonAll();
        // a progress line may be on the terminal: start a fresh line
        System.err.println((dev.gmem.linux.Posix.isTerminal(2) ? "\r\033[K" : "") + "gmem: interrupted (SIG" + name
                + "); partial output files removed");
        System.err.flush();
        Runtime.getRuntime().halt(128 + number);
    }
}
