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
     * The subcommands in the order the help lists them, each built only when it is needed: picocli
     * reads a command's annotations (and its subcommands') when it is added, which for all of them
     * cost some 100 ms of every run. A run that names a command builds that one alone.
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
        Signals.install();
        int status;
        try {
            status = commandLine(args).execute(args);
        } catch (Error e) {
            // picocli hands only Exceptions to the error handler: an Error still gets one line, not a stack trace
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
     * version, or every command when they name none (help, usage).
     */
    static CommandLine commandLine(String[] args) {
        // picocli would otherwise look for Groovy's closure class, which is nowhere: a class that is not
        // found makes the class loader open every jar of the class path, some 20 ms (docs/benchmarks.md)
        System.setProperty("picocli.disable.closures", "true");
        CommandLine cl = new CommandLine(new Main());
        Class<?> named = args.length > 0 && !args[0].equals("help") ? COMMANDS.get(args[0]) : null;
        boolean versionOnly = args.length == 1 && (args[0].equals("--version") || args[0].equals("-V"));
        if (named != null) {
            cl.addSubcommand(args[0], named);
        } else if (!versionOnly) { // the version names no command: none is built for it
            for (Map.Entry<String, Class<?>> c : COMMANDS.entrySet()) cl.addSubcommand(c.getKey(), c.getValue());
        }
        // the settings below reach the subcommands added so far: they are added first
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
