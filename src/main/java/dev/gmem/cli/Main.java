package dev.gmem.cli;

import java.util.LinkedHashMap;
import java.util.Map;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The gmem command line. Each subcommand parses, calls one library method, and prints. */
@Command(
        name = "gmem",
        mixinStandardHelpOptions = true,
        versionProvider = Main.Version.class,
        description = {
            "gmem: guest memory for KVM virtual machines.",
            "Creates and fills guest memory files (KVM guest_memfd where the kernel has it, memfd with",
            "userfaultfd everywhere), restores VM memory snapshots eagerly or lazily, and measures it."
        })
public final class Main implements Runnable {
    /**
     * The subcommands in the order the help lists them, as the build reads them into the command
     * model ({@link CommandModel}); a run builds only the one it names, or all of them for the help.
     */
    private static final Map<String, Class<?>> COMMANDS = commands();

    // class literals, which picocli instantiates: constructor references here made the JDK 25 AOT cache's assembly
    // crash
    private static Map<String, Class<?>> commands() {
        Map<String, Class<?>> m = new LinkedHashMap<>();
        m.put("demo", DemoCommand.class);
        m.put("probe", ProbeCommand.class);
        m.put("bench", BenchCommand.class);
        m.put("image", ImageCommand.class);
        m.put("snapshot", SnapshotCommand.class);
        m.put("restore", RestoreCommand.class);
        m.put("report", ReportCommand.class);
        m.put("fc-handler", FcHandlerCommand.class);
        m.put("fc-keeper", FcKeeperCommand.class);
        m.put("serve", ServeCommand.class);
        m.put("qemu", QemuCommand.class);
        m.put("store", StoreCommands.StoreRoot.class);
        m.put("help", CommandLine.HelpCommand.class);
        return m;
    }

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    public static void main(String[] args) {
        // the handlers are installed while the command line is built (a proxy class the JDK makes, some
        // 6 ms): before the command runs, and so before it writes any file a signal would have to remove
        var installFailed = new java.util.concurrent.atomic.AtomicReference<Throwable>();
        Thread signals = Thread.ofPlatform().name("gmem-signals").start(() -> {
            try {
                Signals.install();
            } catch (Throwable e) {
                installFailed.set(e);
            }
        });
        int status;
        try {
            CommandLine cl = commandLine(args);
            join(signals);
            // no pattern switch on the start path: its first run spins a class (docs/benchmarks.md, start time)
            Throwable failed = installFailed.get();
            if (failed instanceof Error e) throw e;
            if (failed instanceof RuntimeException e) throw e;
            if (failed != null) throw new IllegalStateException("cannot install signal handlers: " + failed, failed);
            status = cl.execute(args);
        } catch (Error | RuntimeException e) {
            // picocli hands only Exceptions to the error handler: an Error still gets one line, not a stack
            // trace; so does a failure before the command runs (no signal handlers, a command model that is
            // missing or of other classes)
            System.err.println("gmem: " + ErrorHandler.message(e));
            if (System.getenv("GMEM_DEBUG") != null) e.printStackTrace();
            status = ExitCode.FAILED.status;
        }
        Signals.finishing(); // from here a signal no longer interrupts: the command is done
        // System.exit looks up the JDK's logger to log the exit, and that lookup opens every jar of the
        // class path (about 20 ms, docs/benchmarks.md): a command that succeeded and left no thread that
        // would keep the JVM alive ends by returning instead, the same exit with status 0
        if (status == 0 && onlyThisThreadKeepsTheJvm()) {
            // should a thread that keeps the JVM alive start after the check, the exit happens anyway
            Thread.ofPlatform().name("gmem-exit").daemon().start(() -> {
                try {
                    Thread.sleep(2000);
                } catch (InterruptedException e) {
                    // exit now
                }
                System.exit(0);
            });
            return;
        }
        System.exit(status);
    }

    private static void join(Thread t) {
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
    }

    /** Whether every live thread but this one is a daemon (the JVM ends when main returns). */
    private static boolean onlyThisThreadKeepsTheJvm() {
        Thread self = Thread.currentThread();
        for (Thread t : Thread.getAllStackTraces().keySet()) {
            if (t != self && t.isAlive() && !t.isDaemon()) return false;
        }
        return true;
    }

    /** The configured command line with every subcommand, for tests. */
    public static CommandLine commandLine() {
        return commandLine(new String[0]);
    }

    /**
     * The configured command line for {@code args}: only the command they name, none for the
     * version, or every command when they name none (help, usage). Built from the command model
     * the build compiled from the annotations ({@link CommandModel}): a run reads no annotation.
     * One command line parses once: a second parse would not reset the options to their fields'
     * initial values (the model does not read them).
     */
    static CommandLine commandLine(String[] args) {
        String first = args.length > 0 ? args[0] : "";
        boolean versionOnly = args.length == 1 && (first.equals("--version") || first.equals("-V"));
        boolean named = !first.isEmpty() && !first.startsWith("-") && !first.equals("help");
        // the version builds no command; the help and the usage all of them
        CommandModel.Node root = CommandModel.load(versionOnly ? c -> false : named ? c -> c.equals(first) : c -> true);
        // a word that names no command: all of them, for picocli's error and its suggestions
        if (named && root.subcommands().isEmpty()) root = CommandModel.load(c -> true);
        CommandLine.IFactory factory = factory();
        return configured(new CommandLine(CommandModel.build(root, factory), factory));
    }

    /**
     * The command line as picocli builds it from the commands' annotations, every subcommand
     * included: what the build compiles into the command model, and what tests compare it with.
     */
    static CommandLine annotatedCommandLine() {
        CommandLine cl = new CommandLine(new Main(), factory());
        for (Map.Entry<String, Class<?>> c : COMMANDS.entrySet()) cl.addSubcommand(c.getKey(), c.getValue());
        return configured(cl);
    }

    private static CommandLine.IFactory factory() {
        // picocli would otherwise look for Groovy's closure class, which is nowhere: a class that is not
        // found makes the class loader open every jar of the class path, some 20 ms (docs/benchmarks.md)
        System.setProperty("picocli.disable.closures", "true");
        return CommandLine.defaultFactory();
    }

    /** The settings every command line gets; they reach the subcommands added so far, so they come last. */
    private static CommandLine configured(CommandLine cl) {
        cl.setUsageHelpWidth(120);
        cl.setExecutionExceptionHandler(new ErrorHandler());
        cl.setParameterExceptionHandler(Main::usageError);
        // every path argument: an empty one is a usage error that names the option, before any work
        cl.registerConverter(java.nio.file.Path.class, value -> {
            if (value.isEmpty()) throw new CommandLine.TypeConversionException("an empty path names no file");
            return java.nio.file.Path.of(value);
        });
        return cl;
    }

    /** A bad argument is one line that names it and where the help is, exit 2: the whole usage would bury the line. */
    private static int usageError(CommandLine.ParameterException e, String[] args) {
        CommandLine c = e.getCommandLine();
        String message = e.getMessage() == null
                ? "bad arguments"
                : e.getMessage().strip().replace('\n', ' ');
        String who = c.getCommandSpec().qualifiedName();
        c.getErr().println(who + ": " + message + " (see '" + c.getCommandSpec().qualifiedName() + " --help')");
        return ExitCode.USAGE.status;
    }

    static final class Version implements CommandLine.IVersionProvider {
        @Override
        public String[] getVersion() {
            String v = Main.class.getPackage().getImplementationVersion();
            return new String[] {"gmem " + (v == null ? "(development build)" : v) + ", Java " + Runtime.version()};
        }
    }

    /** Failures print one line naming what failed, not a stack trace, and exit with the {@link ExitCode} of its type; GMEM_DEBUG=1 shows the trace. */
    static final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {
        /** The error as one line: a file system error without a reason gets the one its type says. */
        static String message(Throwable e) {
            // a native function that could not be linked, say: what went wrong is its cause
            if (e instanceof ExceptionInInitializerError && e.getCause() != null) return message(e.getCause());
            if (e instanceof java.nio.file.FileSystemException f && f.getReason() == null) {
                String why = switch (f) {
                    case java.nio.file.NoSuchFileException x -> "no such file or directory";
                    case java.nio.file.AccessDeniedException x -> "permission denied";
                    case java.nio.file.FileAlreadyExistsException x -> "already exists";
                    case java.nio.file.NotDirectoryException x -> "not a directory";
                    case java.nio.file.DirectoryNotEmptyException x -> "directory not empty";
                    default -> f.getClass().getSimpleName();
                };
                return f.getFile() + (f.getOtherFile() == null ? "" : " -> " + f.getOtherFile()) + ": " + why;
            }
            return e.getMessage() == null ? e.toString() : e.getMessage();
        }

        @Override
        public int handleExecutionException(Exception e, CommandLine cl, CommandLine.ParseResult parsed) {
            cl.getErr().println(cl.getCommandSpec().qualifiedName() + ": " + message(e));
            if (System.getenv("GMEM_DEBUG") != null) e.printStackTrace(cl.getErr());
            return ExitCode.of(e).status;
        }
    }
}
