package dev.gmem.cli;

import dev.gmem.metrics.Metrics;
import dev.gmem.metrics.MetricsServer;
import java.io.IOException;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * {@code --metrics HOST:PORT} and {@code --metrics-any-address}, for the commands that serve live
 * metrics (a mixin): the endpoint started, or a usage error naming what is wrong.
 */
final class MetricsEndpoint {
    @Option(
            names = "--metrics",
            paramLabel = "HOST:PORT",
            description =
                    "Serve live metrics in the Prometheus text format at http://HOST:PORT/metrics while it runs (port 0: any"
                            + " free port; the address is printed on stderr). Loopback only, unless --metrics-any-address.")
    String address;

    @Option(names = "--metrics-any-address", description = "Allow --metrics to bind an address other than loopback.")
    boolean anyAddress;

    /** Whether either option was given. */
    boolean given() {
        return address != null || anyAddress;
    }

    /** Serves {@code metrics} at the address given (loopback only unless --metrics-any-address); announces it on stderr. */
    MetricsServer start(CommandLine.Model.CommandSpec spec, Metrics metrics) throws IOException {
        MetricsServer server;
        try {
            server = MetricsServer.start(metrics, address, anyAddress);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(spec.commandLine(), "--metrics " + e.getMessage());
        }
        spec.commandLine().getErr().println(spec.qualifiedName() + ": metrics at " + server.url());
        spec.commandLine().getErr().flush();
        return server;
    }
}
