package dev.gmem.metrics;

import io.prometheus.metrics.exporter.httpserver.HTTPServer;
import java.io.IOException;
import java.net.BindException;
import java.net.InetAddress;
import java.net.URI;
import java.net.UnknownHostException;

/**
 * {@link Metrics} over HTTP at {@code /metrics}, in the Prometheus text format, through the
 * Prometheus Java client's server. Binds a loopback address unless asked explicitly for another:
 * metrics say which VMs a host serves and how busy it is.
 */
public final class MetricsServer implements AutoCloseable {
    private final HTTPServer server;
    private final String host;

    private MetricsServer(HTTPServer server, String host) {
        this.server = server;
        this.host = host;
    }

    /**
     * Serves {@code metrics} at {@code hostPort} ({@code HOST:PORT}, {@code [IPv6]:PORT}; port 0: any
     * free port, see {@link #url}).
     *
     * @param anyAddress whether an address other than loopback may be bound
     * @throws IllegalArgumentException for a malformed address, or one not on loopback without {@code anyAddress}
     * @throws IOException when it cannot listen there (a port in use, say), saying so
     */
    public static MetricsServer start(Metrics metrics, String hostPort, boolean anyAddress) throws IOException {
        int colon = hostPort.lastIndexOf(':');
        if (colon <= 0 || colon == hostPort.length() - 1)
            throw new IllegalArgumentException("'" + hostPort + "' is not HOST:PORT");
        String host = hostPort.substring(0, colon);
        if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
        int port;
        try {
            port = Integer.parseInt(hostPort.substring(colon + 1));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("'" + hostPort + "': the port is not a number");
        }
        if (port < 0 || port > 65535)
            throw new IllegalArgumentException("'" + hostPort + "': the port must be between 0 and 65535");
        InetAddress address;
        try {
            address = InetAddress.getByName(host);
        } catch (UnknownHostException e) {
            throw new IllegalArgumentException("'" + hostPort + "': unknown host " + host);
        }
        if (!address.isLoopbackAddress() && !anyAddress) {
            throw new IllegalArgumentException(
                    "'" + hostPort + "' is not a loopback address; metrics are served beyond this host only when asked"
                            + " explicitly (--metrics-any-address)");
        }
        try {
            HTTPServer s = HTTPServer.builder()
                    .inetAddress(address)
                    .port(port)
                    .registry(metrics.registry())
                    .buildAndStart();
            return new MetricsServer(
                    s,
                    address.getHostAddress().contains(":")
                            ? "[" + address.getHostAddress() + "]"
                            : address.getHostAddress());
        } catch (BindException e) {
            throw new IOException(
                    "cannot serve metrics at " + hostPort + ": "
                            + (e.getMessage() == null
                                    ? "cannot bind"
                                    : e.getMessage().toLowerCase(java.util.Locale.ROOT)),
                    e);
        }
    }

    public int port() {
        return server.getPort();
    }

    /** Where the metrics are: {@code http://HOST:PORT/metrics}. */
    public URI url() {
        return URI.create("http://" + host + ":" + port() + "/metrics");
    }

    @Override
    public void close() {
        server.close();
    }
}
