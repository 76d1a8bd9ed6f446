package dev.gmem.cli;

import dev.gmem.migrate.RemoteSource;
import dev.gmem.migrate.Tls;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/** The options of post-copy's two sides, declared once: TLS, and (for destinations) the source and its time-outs. */
final class PostcopyOptions {
    private PostcopyOptions() {}

    /** TLS 1.3 with certificates on both sides. */
    static final class TlsMixin {
        @Option(
                names = "--tls-cert",
                paramLabel = "PEM",
                description = "This side's certificate chain (PEM), with --tls-key. Turns on TLS 1.3; needs --tls-ca.")
        Path cert;

        @Option(
                names = "--tls-key",
                paramLabel = "PEM",
                description = "This side's private key (unencrypted PKCS#8 PEM).")
        Path key;

        @Option(
                names = "--tls-p12",
                paramLabel = "FILE",
                description =
                        "This side's key and certificate chain as a PKCS#12 store, instead of --tls-cert and --tls-key.")
        Path p12;

        @Option(
                names = "--tls-password-file",
                paramLabel = "FILE",
                description = "The file holding the --tls-p12 store's password (its first line; default: none).")
        Path passwordFile;

        @Option(
                names = "--tls-ca",
                paramLabel = "PEM",
                description = "The certificate authority the peer's certificate must chain to (PEM).")
        Path ca;

        /** The TLS context asked for, or null for plain TCP; a usage error names what is missing. */
        javax.net.ssl.SSLContext context(CommandLine.Model.CommandSpec spec) throws IOException {
            boolean any = cert != null || key != null || p12 != null || ca != null || passwordFile != null;
            if (!any) return null;
            if (ca == null)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "TLS needs --tls-ca: the peer's certificate authority");
            if (p12 != null && (cert != null || key != null))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "give --tls-p12, or --tls-cert with --tls-key, not both");
            if (p12 == null && (cert == null || key == null))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "TLS needs this side's identity: --tls-cert with --tls-key, or --tls-p12");
            if (p12 == null) return Tls.context(Tls.Identity.pem(cert, key), ca);
            char[] password = passwordFile == null
                    ? new char[0]
                    : Files.readString(passwordFile, StandardCharsets.UTF_8)
                            .lines()
                            .findFirst()
                            .orElse("")
                            .toCharArray();
            return Tls.context(Tls.Identity.pkcs12(p12, password), ca);
        }
    }

    /** --push-nice's help, on both sides. */
    static final String PUSH_NICE_HELP =
            "nicer than this process the push's threads run (default ${DEFAULT-VALUE}; 0 to 19): on a busy"
                    + " core they yield it to the fault path. 0 keeps the push at the process's priority, so that a"
                    + " loaded host's other busy threads (other VMs' vCPUs) do not slow it.";

    static void checkPushNice(CommandLine.Model.CommandSpec spec, int nice) {
        if (nice < 0 || nice > 19)
            throw new CommandLine.ParameterException(spec.commandLine(), "--push-nice must be 0 to 19");
    }

    /** A destination's: how long a lost source is waited for, and what silence counts as loss. */
    static final class Destination {
        @Option(
                names = "--reconnect-timeout",
                paramLabel = "SECONDS",
                defaultValue = "30",
                description = "With a tcp:// source: how long to keep reconnecting to a source that was lost (default"
                        + " ${DEFAULT-VALUE}); faulting threads wait meanwhile. Then the restore fails.")
        int reconnectSeconds;

        @Option(
                names = "--peer-timeout",
                paramLabel = "MS",
                defaultValue = "3000",
                description = "With a tcp:// source: a connection silent this long is taken as lost (default"
                        + " ${DEFAULT-VALUE}; the source pings every 250 ms).")
        int peerTimeoutMs;

        @Option(
                names = "--push-nice",
                paramLabel = "N",
                defaultValue = "10",
                description = "With a tcp:// source: how much " + PUSH_NICE_HELP)
        int pushNice;

        @CommandLine.Mixin
        TlsMixin tls;

        /** A tcp://HOST:PORT argument, connected to; null when {@code argument} is not one. */
        RemoteSource connect(
                CommandLine.Model.CommandSpec spec, String argument, java.util.function.Consumer<String> log)
                throws IOException {
            if (!argument.startsWith("tcp://")) return null;
            if (reconnectSeconds < 0 || reconnectSeconds > 86400)
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--reconnect-timeout must be 0 to 86400 seconds");
            if (peerTimeoutMs < 500 || peerTimeoutMs > 600_000)
                throw new CommandLine.ParameterException(spec.commandLine(), "--peer-timeout must be 500 to 600000 ms");
            checkPushNice(spec, pushNice);
            HostPort at = HostPort.parse(spec, argument.substring(6), "the source");
            return RemoteSource.connect(
                    at.host(),
                    at.port(),
                    new RemoteSource.Options(
                            Duration.ofSeconds(reconnectSeconds),
                            Duration.ofMillis(peerTimeoutMs),
                            tls.context(spec),
                            pushNice),
                    log);
        }
    }

    /** HOST:PORT, with [v6]:PORT for IPv6. */
    record HostPort(String host, int port) {
        static HostPort parse(CommandLine.Model.CommandSpec spec, String s, String what) {
            int colon = s.lastIndexOf(':');
            try {
                if (colon > 0) {
                    String host = s.substring(0, colon);
                    if (host.startsWith("[") && host.endsWith("]")) host = host.substring(1, host.length() - 1);
                    int port = Integer.parseInt(s.substring(colon + 1));
                    if (port >= 0 && port <= 65535 && !host.isEmpty()) return new HostPort(host, port);
                }
            } catch (NumberFormatException ignored) {
                // the message below
            }
            throw new CommandLine.ParameterException(spec.commandLine(), what + " must be HOST:PORT, not '" + s + "'");
        }
    }
}
