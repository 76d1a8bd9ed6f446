package dev.gmem.cli;

import dev.gmem.migrate.PageServer;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import java.io.PrintWriter;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "serve",
        header =
                "Serve one VM's memory to post-copy destinations on other hosts (gmem restore tcp://, fc-handler --source).",
        mixinStandardHelpOptions = true,
        description = {
            "The source side of post-copy: serve a gmem snapshot, or the memory file of a paused VM (a raw file, a tmpfs",
            "file, a memfd as /proc/PID/fd/N; read in place, never copied first), to every destination that connects.",
            "Each gets the map first (zero pages and holes are never sent), its faults' urgent requests answered on a",
            "connection of their own, and a push of every data page it lacks on a second one: the access order first,",
            "then by address, continuing after each page a fault asked for. A destination that reconnects says what it",
            "has, and the push resumes from there. The protocol is in docs/postcopy.md.",
            "",
            "Without TLS (--tls-cert/--tls-key or --tls-p12, and --tls-ca) it listens on loopback only. One line on stdout",
            "when ready, one on stderr for each destination's events; SIGTERM or SIGINT stops it, with each destination's",
            "counters."
        })
final class ServeCommand implements Callable<Integer> {
    @Option(
            names = "--listen",
            required = true,
            paramLabel = "HOST:PORT",
            description = "Where to listen (port 0: any free port; the ready line names it).")
    String listen;

    @Option(
            names = "--snapshot",
            paramLabel = "FILE|s3://BUCKET/PREFIX/NAME",
            description = "A gmem snapshot to serve, or a snapshot in a store (see --endpoint).")
    String snapshot;

    /** --endpoint and the chunk cache, for an s3:// snapshot. */
    @CommandLine.Mixin
    StoreOptions store;

    @Option(
            names = "--memory",
            paramLabel = "FILE",
            description = "A paused VM's raw memory file to serve (regions end to end; see --regions).")
    Path memory;

    @Option(names = "--regions", description = SnapshotCommand.REGIONS_HELP)
    String regions;

    @Option(
            names = "--lz4",
            description = "Compress pushed batches with LZ4 where that saves an eighth or more (costs CPU on this side;"
                    + " pays on slow links).")
    boolean lz4;

    @Option(
            names = "--push-buffer",
            paramLabel = "SIZE|auto",
            defaultValue = "auto",
            description = "The push connection's socket send buffer (default ${DEFAULT-VALUE}: 1M for a destination on"
                    + " loopback, the kernel's sizing for any other; 0: the kernel's sizing). On loopback it bounds the"
                    + " pushed bytes queued ahead of a fault's answer; the kernel caps it at net.core.wmem_max, and a"
                    + " push needs about its bandwidth times the round trip.")
    String pushBuffer;

    @Option(
            names = "--push-nice",
            paramLabel = "N",
            defaultValue = "10",
            description = "How much " + PostcopyOptions.PUSH_NICE_HELP)
    int pushNice;

    @Option(
            names = "--peer-timeout",
            paramLabel = "MS",
            defaultValue = "5000",
            description =
                    "A destination silent this long is dropped (default ${DEFAULT-VALUE}; destinations ping every 250 ms).")
    int peerTimeoutMs;

    @CommandLine.Mixin
    PostcopyOptions.TlsMixin tls;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    record Ready(
            String event, String listen, String source, String format, long guestBytes, long dataBytes, boolean tls) {}

    record Stopped(String event, String signal, java.util.List<PageServer.DestinationStats> destinations) {}

    @Override
    public Integer call() throws Exception {
        if ((snapshot == null) == (memory == null))
            throw new CommandLine.ParameterException(spec.commandLine(), "give --snapshot or --memory (one of them)");
        if (regions != null && memory == null)
            throw new CommandLine.ParameterException(spec.commandLine(), "--regions describes a --memory file");
        if (peerTimeoutMs < 500 || peerTimeoutMs > 600_000)
            throw new CommandLine.ParameterException(spec.commandLine(), "--peer-timeout must be 500 to 600000 ms");
        PostcopyOptions.checkPushNice(spec, pushNice);
        int pushSendBuffer = PageServer.Options.PUSH_SEND_BUFFER_AUTO;
        if (!pushBuffer.equals("auto")) {
            long b;
            try {
                b = Sizes.parse(pushBuffer);
            } catch (CommandLine.TypeConversionException e) {
                throw new CommandLine.ParameterException(spec.commandLine(), "--push-buffer: " + e.getMessage());
            }
            if (b != 0 && (b < 64 << 10 || b > 1 << 30))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--push-buffer must be auto, 0, or 64K to 1G");
            pushSendBuffer = (int) b;
        }
        PostcopyOptions.HostPort at = PostcopyOptions.HostPort.parse(spec, listen, "--listen");
        javax.net.ssl.SSLContext context = tls.context(spec);
        InetAddress address = InetAddress.getByName(at.host());
        if (context == null && !address.isLoopbackAddress())
            throw new CommandLine.ParameterException(
                    spec.commandLine(),
                    "without TLS gmem serve listens on loopback only, not " + at.host()
                            + ": give --tls-cert and --tls-key (or --tls-p12) and --tls-ca to serve other hosts");
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        String name = spec.qualifiedName();
        Consumer<String> log = l -> {
            synchronized (err) {
                err.println(name + ": " + l);
                err.flush();
            }
        };
        if (context == null) log.accept("no TLS: listening on loopback only, and unencrypted");
        String input = snapshot != null ? snapshot : memory.toString();
        try (PageSource source = store.openSource(
                spec.commandLine(),
                input,
                p -> PageSources.open(
                        p,
                        SnapshotCommand.regions(spec.commandLine(), regions),
                        SnapshotCommand.threads(),
                        x -> {},
                        snapshot != null ? PageSources.Format.SNAPSHOT : PageSources.Format.RAW))) {
            PageServer server = PageServer.start(
                    new InetSocketAddress(address, at.port()),
                    source,
                    new PageServer.Options(Duration.ofMillis(peerTimeoutMs), lz4, context, pushSendBuffer, pushNice),
                    log);
            java.util.concurrent.CountDownLatch stopped = new java.util.concurrent.CountDownLatch(1);
            Signals.onStop(signal -> {
                java.util.List<PageServer.DestinationStats> d = server.stats();
                server.close();
                line(
                        out,
                        json.on
                                ? Json.oneLine(new Stopped("stopped", signal, d))
                                : name + ": stopped (" + signal + ") after serving " + d.size() + " destinations");
                stopped.countDown();
                return 0;
            });
            String where = server.address().getAddress().getHostAddress() + ":"
                    + server.address().getPort();
            line(
                    out,
                    json.on
                            ? Json.oneLine(new Ready(
                                    "ready",
                                    where,
                                    input,
                                    source.format(),
                                    source.size(),
                                    source.counts().dataBytes(),
                                    context != null))
                            : String.format(
                                    Locale.ROOT,
                                    "%s: serving %s (%s, %s of data) on %s%s",
                                    name,
                                    input,
                                    source.format(),
                                    Sizes.format(source.counts().dataBytes()),
                                    where,
                                    context != null ? " with TLS" : ""));
            stopped.await(); // until a signal stops it (its handler closes the server)
        }
        return 0;
    }

    private static void line(PrintWriter out, String s) {
        synchronized (out) {
            out.println(s);
            out.flush();
        }
    }
}
