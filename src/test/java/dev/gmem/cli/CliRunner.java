package dev.gmem.cli;

/** gmem's command line in this JVM, as tests of other packages run it: only the command the arguments name. */
public final class CliRunner {
    private CliRunner() {}

    public record Run(int exit, String out, String err) {}

    public static Run run(String... args) {
        ProbeCommandTest.Run r = ProbeCommandTest.run(args);
        return new Run(r.exit(), r.out(), r.err());
    }
}
