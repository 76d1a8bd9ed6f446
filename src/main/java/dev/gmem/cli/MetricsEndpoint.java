package dev.gmem.cli;

import dev.gmem.metrics.Metrics;
import dev.gmem.metrics.MetricsServer;
import java.io.IOException;
import picocli.CommandLine;

/** {@code --metrics HOST:PORT} of the commands that serve live metrics: the endpoint started, or a usage error naming what is wrong. */
final class MetricsEndpoint {
    private MetricsEndpoint() {}

    /** Serves {@code metrics} at {@code address} (loopback only unless {@code anyAddress}); announces it on stderr. */
    static MetricsServer start(CommandLine.Model.CommandSpec spec, Metrics metrics, String address, boolean anyAddress)
            throws IOException {
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
