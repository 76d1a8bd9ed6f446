package dev.gmem.cli;

import dev.gmem.fc.AccessRecorder;
import dev.gmem.fc.ControlSocket;
import dev.gmem.fc.FcHandler;
import dev.gmem.fc.Session;
import dev.gmem.fc.StateDir;
import dev.gmem.fc.Takeover;
import dev.gmem.linux.Fd;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.function.Consumer;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(
        name = "fc-handler",
        header = "Serve Firecracker snapshot restores' page faults from a memory file or a gmem snapshot.",
        mixinStandardHelpOptions = true,
        description = {
            "A long-running page-fault handler for Firecracker's Uffd memory backend: listen on SOCKET (mode 0600; a stale",
            "socket is replaced only if nothing listens on it) and serve every connection as one VM: its handshake",
            "checked, its faults served from FILE (a raw memory file, regions end to end, or a gmem snapshot; detected by",
            "content) with fault-around and a background prefetch, then graduated (its regions unregistered, so that the",
            "VM no longer depends on this process) once every data page is in place. One line on stdout when ready, and",
            "one per VM when it ends. SIGTERM or SIGINT stops accepting, waits up to --shutdown-timeout for every live VM",
            "to graduate, names those it could not finish, and exits 0 when none was left (1 otherwise).",
            "gmem fc-handler --socket PATH --stats asks a running handler for its statistics (PATH.ctl, its control socket).",
            "--metrics gives each VM its own session label; the ready line names the metrics URL."
        })
final class FcHandlerCommand implements Callable<Integer> {
    @Option(
            names = "--socket",
            paramLabel = "PATH",
            description =
                    "The Unix socket Firecracker's backend_path names. For --stats, --graduate, --drain and --takeover,"
                            + " --state-dir alone also finds it: a handler records its socket there.")
    Path socket;

    @Option(
            names = "--snapshot",
            paramLabel = "FILE|s3://BUCKET/PREFIX/NAME",
            description =
                    "Firecracker's memory file, or a gmem snapshot of it, or a snapshot in a store (see --endpoint).")
    String snapshot;

    /** --endpoint and the chunk cache, for an s3:// snapshot. */
    @CommandLine.Mixin
    StoreOptions store;

    @Option(
            names = "--source",
            paramLabel = "tcp://HOST:PORT",
            description =
                    "Instead of --snapshot: the memory a 'gmem serve' on another host serves. Each VM is a post-copy"
                            + " destination of its own: its faults asked for at once, the rest pushed; see --reconnect-timeout and TLS.")
    String remoteSource;

    /** --reconnect-timeout, --peer-timeout and TLS, for --source. */
    @CommandLine.Mixin
    PostcopyOptions.Destination remote;

    @Option(
            names = "--regions",
            description = SnapshotCommand.REGIONS_HELP
                    + " For a VM backed by 2 MiB hugetlbfs pages, give its page size: 0:SIZE:2M.")
    String regions;

    @Option(names = "--format", defaultValue = "auto", description = SnapshotCommand.FORMAT_HELP)
    String format;

    @Option(
            names = "--shutdown-timeout",
            defaultValue = "30",
            paramLabel = "SECONDS",
            description = "On SIGTERM, how long to wait for live VMs to graduate (default ${DEFAULT-VALUE}).")
    int shutdownSeconds;

    @Option(
            names = "--handshake-timeout",
            defaultValue = "5",
            paramLabel = "SECONDS",
            description = "A client that sends no handshake in this time is dropped (default ${DEFAULT-VALUE}).")
    int handshakeSeconds;

    @Option(
            names = "--on-failure",
            defaultValue = "kill",
            description =
                    "When a VM's session fails (its source unreadable, a checksum wrong): kill its VMM with SIGKILL through a"
                            + " pidfd, so that it is seen dead rather than frozen, or keep it frozen and report. Default ${DEFAULT-VALUE}.")
    String onFailure;

    @Option(
            names = "--prefetch",
            defaultValue = "all",
            description =
                    "all: fill each VM in the background (the snapshot's recorded access order first, then by address) and"
                            + " graduate it when every data page is in place; off: serve faults alone (a VM then depends on this"
                            + " process until it exits, or until SIGTERM fills and graduates it). Default ${DEFAULT-VALUE}.")
    String prefetch;

    @Option(
            names = "--fault-around",
            defaultValue = "3",
            paramLabel = "PAGES",
            description =
                    "A fault also fills up to this many following data pages of its chunk, in the same copy (0 to 255;"
                            + " default ${DEFAULT-VALUE}). 0 serves one page per fault.")
    int faultAround;

    @Option(
            names = "--record-access",
            paramLabel = "FILE",
            description =
                    "Write the data pages the VMs' faults bring in (with their fault-around), in first-touch order, each once, as guest physical addresses"
                            + " (the form gmem snapshot pack --access-order FILE takes), so that the next restore prefetches"
                            + " that working set first. With --prefetch off it holds every page they touched.")
    Path recordAccess;

    @Option(
            names = "--allow-uid",
            paramLabel = "UID",
            description =
                    "Serve only VMMs of this user (repeat for more; default: any user that can open the 0600 socket)."
                            + " Others are refused, in one line, by SO_PEERCRED.")
    List<Integer> allowUids;

    /** --metrics, --metrics-any-address. */
    @CommandLine.Mixin
    MetricsEndpoint metricsEndpoint;

    @Option(
            names = "--state-dir",
            paramLabel = "DIR",
            description =
                    "Keep each VM's session in DIR (its regions, its VMM, its removals), so that a handler started on the same"
                            + " DIR after this one died, even by SIGKILL, takes its VMs over: it takes their userfaultfds again"
                            + " from the VMMs (pidfd_getfd: root or CAP_SYS_PTRACE), wakes them, and serves them on.")
    Path stateDir;

    @Option(
            names = "--keeper",
            paramLabel = "PATH",
            description =
                    "With --state-dir: give each VM's userfaultfd and pidfd to the gmem fc-keeper listening on PATH, and take"
                            + " them back from it when taking VMs over. For a handler that may not use pidfd_getfd (a jailed"
                            + " VMM under another uid): its VMs then survive this process's death, not the keeper's.")
    Path keeper;

    @Option(
            names = "--stats",
            description =
                    "Do not serve: ask the handler running on --socket, through its control socket (PATH.ctl), for its"
                            + " statistics now (each live VM, and the totals over every VM it served), and print them.")
    boolean stats;

    @Option(
            names = "--graduate",
            arity = "0..1",
            fallbackValue = "all",
            paramLabel = "SESSION",
            description =
                    "Do not serve: ask the handler on --socket to fill session SESSION (every live one without it) now and"
                            + " graduate it, so that its VM depends on no handler any more.")
    String graduate;

    @Option(
            names = "--takeover",
            description =
                    "Start by taking over from the handler running on --socket (an upgrade): it hands over its listening"
                            + " socket and lets its VMs go, and this one takes them over from --state-dir (which both must"
                            + " name), then serves on. The old one exits.")
    boolean takeover;

    @Option(
            names = "--drain",
            description =
                    "Do not serve: ask the handler on --socket to stop accepting VMs (its socket is removed, so that a new"
                            + " handler can listen there) and to exit once its last VM has graduated or ended.")
    boolean drain;

    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    /** The open --state-dir, once the serving starts. */
    private StateDir state;

    /** The ready line's, and each ended session's, JSON. */
    record Ready(
            String event,
            String socket,
            String snapshot,
            String format,
            long guestBytes,
            long dataBytes,
            String control,
            String metrics) {}

    record Ended(
            String event,
            long session,
            int pid,
            int uid,
            String end,
            String reason,
            long faults,
            long faultPages,
            long prefetchPages,
            long zeroPages,
            double graduatedMs,
            double prefetchMs) {}

    record Stopped(String event, String signal, List<Long> unfinished) {}

    @Override
    public Integer call() throws Exception {
        if ((stats ? 1 : 0) + (drain ? 1 : 0) + (graduate != null ? 1 : 0) > 1)
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--stats, --graduate and --drain ask one thing each: give one");
        if (socket == null) {
            if (stateDir == null || !(stats || drain || graduate != null || takeover))
                throw new CommandLine.ParameterException(
                        spec.commandLine(),
                        "Missing required option: '--socket=PATH' (for --stats, --graduate, --drain and --takeover,"
                                + " --state-dir of a running handler finds it)");
            socket = StateDir.socketIn(stateDir);
        }
        if (stats) return printStats();
        if (drain) return ask("drain");
        if (graduate != null) {
            if (!graduate.equals("all") && !graduate.matches("[0-9]+"))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--graduate takes a session number, not '" + graduate + "'");
            return ask(graduate.equals("all") ? "graduate" : "graduate " + graduate);
        }
        if (keeper != null && stateDir == null)
            throw new CommandLine.ParameterException(
                    spec.commandLine(),
                    "--keeper needs --state-dir: the keeper holds descriptors, the VMs' state is there");
        if (metricsEndpoint.anyAddress && metricsEndpoint.address == null)
            throw new CommandLine.ParameterException(spec.commandLine(), "--metrics-any-address needs --metrics");
        if ((snapshot == null) == (remoteSource == null))
            throw new CommandLine.ParameterException(
                    spec.commandLine(),
                    snapshot == null
                            ? "Missing required option: '--snapshot=FILE' or '--source=tcp://HOST:PORT' (needed except with"
                                    + " --stats, --graduate and --drain)"
                            : "give --snapshot or --source, not both");
        if (remoteSource != null && !remoteSource.startsWith("tcp://"))
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--source must be tcp://HOST:PORT, not '" + remoteSource + "'");
        if (remoteSource != null && (regions != null || !format.equals("auto")))
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--regions and --format describe a --snapshot file, not a --source");
        Options.within(spec.commandLine(), "--shutdown-timeout", shutdownSeconds, 0, 3600, "seconds");
        Options.within(spec.commandLine(), "--handshake-timeout", handshakeSeconds, 1, 600, "seconds");
        FcHandler.OnFailure policy = switch (onFailure.toLowerCase(Locale.ROOT)) {
            case "kill" -> FcHandler.OnFailure.KILL;
            case "keep" -> FcHandler.OnFailure.KEEP;
            default ->
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--on-failure must be kill or keep, not '" + onFailure + "'");
        };
        if (faultAround < 0 || faultAround > FcHandler.MAX_FAULT_AROUND)
            throw new CommandLine.ParameterException(
                    spec.commandLine(),
                    "--fault-around must be between 0 and " + FcHandler.MAX_FAULT_AROUND + " pages");
        Session.Prefetch fill = switch (prefetch.toLowerCase(Locale.ROOT)) {
            case "all" -> Session.Prefetch.ALL;
            case "off" -> Session.Prefetch.OFF;
            default ->
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--prefetch must be all or off, not '" + prefetch + "'");
        };
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        String name = spec.qualifiedName();
        Consumer<String> log = l -> {
            synchronized (err) {
                err.println(name + ": " + l);
                err.flush();
            }
        };
        try (PageSource source = remoteSource != null
                ? remote.connect(spec, remoteSource, log)
                : store.openSource(
                        spec.commandLine(),
                        snapshot,
                        p -> PageSources.open(
                                p,
                                SnapshotCommand.regions(spec.commandLine(), regions),
                                SnapshotCommand.threads(),
                                x -> {},
                                SnapshotCommand.format(spec.commandLine(), format)))) {
            if (recordAccess != null
                    && snapshot != null
                    && !dev.gmem.store.S3Location.isS3(snapshot)
                    && java.nio.file.Files.exists(recordAccess)
                    && java.nio.file.Files.isSameFile(recordAccess, Path.of(snapshot)))
                throw new CommandLine.ParameterException(
                        spec.commandLine(), "--record-access must not name the snapshot it serves");
            // what serves, in the order started; closed in reverse if a later one cannot start, and at the stop
            List<AutoCloseable> started = new java.util.ArrayList<>();
            // a live handler there is refused before anything is created, unless it hands its socket over
            Fd inherited = takeover ? askForHandover() : null;
            if (inherited == null) FcHandler.clearStale(socket);
            else started.add(inherited::closeQuietly);
            dev.gmem.metrics.Metrics metrics = metricsEndpoint.address == null ? null : new dev.gmem.metrics.Metrics();
            dev.gmem.metrics.MetricsServer server = null;
            AccessRecorder recorder = null;
            try {
                if (metrics != null) started.add(server = metricsEndpoint.start(spec, metrics));
                if (stateDir != null) {
                    StateDir state = takeover
                            ? openWhenFree(stateDir, identity(source))
                            : StateDir.open(stateDir, identity(source));
                    started.add(state);
                    this.state = state;
                    state.recordSocket(socket);
                    if (!state.onTmpfs())
                        log.accept("--state-dir " + stateDir
                                + " is not on tmpfs: writeback may write-protect a VM's events"
                                + " buffer, and a removal read in the instant of a kill could then be lost; put it on"
                                + " tmpfs (/run) for crash recovery without that window");
                    if (keeper != null) {
                        try {
                            ControlSocket.askForDescriptors(keeper, "list", List.of(), dev.gmem.fc.Keeper.NAME);
                        } catch (java.io.IOException e) {
                            log.accept(
                                    "--keeper: " + e.getMessage() + "; VMs are served, but not kept, until it answers");
                        }
                    }
                    if (!Takeover.mayTakeDescriptors())
                        log.accept(
                                keeper == null
                                        ? "--state-dir: this process may not take descriptors from other processes (pidfd_getfd needs"
                                                + " root or CAP_SYS_PTRACE): its VMs survive a handover (--takeover) but not its death;"
                                                + " run gmem fc-keeper and give --keeper for that"
                                        : "--state-dir: this process may not take descriptors from other processes (pidfd_getfd needs"
                                                + " root or CAP_SYS_PTRACE): its VMs survive its death through the keeper at "
                                                + keeper
                                                + ", not the keeper's");
                }
                if (recordAccess != null)
                    started.add(recorder = AccessRecorder.create(recordAccess, source.regions(), source.size(), log));
            } catch (java.io.IOException | RuntimeException e) {
                closeAll(started);
                throw e;
            }
            FcHandler handler;
            try {
                FcHandler.Options o = new FcHandler.Options(
                        Duration.ofSeconds(handshakeSeconds),
                        fill,
                        faultAround,
                        policy,
                        allowUids == null ? java.util.Set.of() : java.util.Set.copyOf(allowUids),
                        recorder,
                        metrics,
                        state,
                        keeper);
                FcHandler.Providers providers = remoteSource != null
                        ? remoteProviders(log)
                        : FcHandler.Providers.shared(new SourcePages(source).verifyAhead());
                handler = inherited == null
                        ? FcHandler.start(socket, providers, source.size(), o, r -> line(out, ended(r)), log)
                        : FcHandler.adopt(
                                socket, inherited, providers, source.size(), o, r -> line(out, ended(r)), log);
            } catch (java.io.IOException | RuntimeException e) {
                closeAll(started);
                throw e;
            }
            java.util.concurrent.CompletableFuture<String> ending = new java.util.concurrent.CompletableFuture<>();
            ControlSocket control;
            try {
                control = ControlSocket.start(
                        ControlSocket.beside(socket),
                        request -> answer(
                                handler,
                                request,
                                () -> Thread.ofPlatform()
                                        .name("gmem-fc-drain")
                                        .daemon()
                                        .start(() -> {
                                            // exits once the last live VM has ended
                                            while (handler.liveSessions() > 0) sleepQuietly(50);
                                            ending.complete("drained");
                                        }),
                                ending::complete),
                        log);
            } catch (java.io.IOException | RuntimeException e) {
                handler.stop(Duration.ZERO);
                closeAll(started);
                throw e;
            }
            java.util.function.ToIntFunction<String> stopAll = why -> {
                control.close();
                List<Long> unfinished = handler.stop(Duration.ofSeconds(shutdownSeconds));
                closeAll(started);
                if (json.on) line(out, oneLine(new Stopped("stopped", why, unfinished)));
                else
                    line(
                            out,
                            name + ": stopped (" + why + ")"
                                    + (unfinished.isEmpty()
                                            ? ": no VM left unfinished"
                                            : "; not finished: sessions " + unfinished));
                return unfinished.isEmpty() ? 0 : 1;
            };
            Signals.onStop(stopAll::applyAsInt);
            Ready ready = new Ready(
                    "ready",
                    socket.toString(),
                    snapshot != null ? snapshot.toString() : remoteSource,
                    source.format(),
                    source.size(),
                    source.counts().dataBytes(),
                    control.path().toString(),
                    server == null ? null : server.url().toString());
            line(
                    out,
                    json.on
                            ? oneLine(ready)
                            : String.format(
                                    Locale.ROOT,
                                    "%s: listening on %s, serving %s (%s, %s of data)",
                                    name,
                                    socket,
                                    snapshot != null ? snapshot : remoteSource,
                                    source.format(),
                                    Sizes.format(source.counts().dataBytes())));
            // until a signal stops the process (Signals halts it), or a drain has seen its last VM end
            return stopAll.applyAsInt(ending.get());
        }
    }

    /** What a state directory records of the source: a file's identity, or the remote source's address and map. */
    private String identity(PageSource source) throws java.io.IOException {
        if (snapshot != null && !dev.gmem.store.S3Location.isS3(snapshot)) return StateDir.identity(Path.of(snapshot));
        // a snapshot in a store is its manifest's SHA-256: one pushed again under the same name is another
        if (source instanceof dev.gmem.store.StoreSource s) return snapshot + " " + s.identity();
        return (snapshot != null ? snapshot : remoteSource) + " " + source.size() + " "
                + source.counts().dataPages();
    }

    /**
     * Each VM its own post-copy destination: a connection pair of its own to the source (so its own
     * push), closed when its session ends.
     */
    private FcHandler.Providers remoteProviders(Consumer<String> log) {
        java.util.Map<dev.gmem.fault.PageProvider, dev.gmem.migrate.RemoteSource> open =
                new java.util.concurrent.ConcurrentHashMap<>();
        return new FcHandler.Providers() {
            @Override
            public dev.gmem.fault.PageProvider open() throws java.io.IOException {
                dev.gmem.migrate.RemoteSource r = remote.connect(spec, remoteSource, log);
                open.put(r.provider(), r);
                return r.provider();
            }

            @Override
            public void close(dev.gmem.fault.PageProvider p) {
                dev.gmem.migrate.RemoteSource r = open.remove(p);
                if (r != null) r.close();
            }
        };
    }

    private static void sleepQuietly(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Closes {@code started} in reverse order, never throwing (a close that fails is not worth more than the stop). */
    private static void closeAll(List<AutoCloseable> started) {
        for (int i = started.size() - 1; i >= 0; i--) {
            try {
                started.get(i).close();
            } catch (Exception ignored) {
                // the process is stopping: nothing is left to do about it
            }
        }
    }

    /**
     * {@code --takeover}: asks the handler on {@code --socket} to hand over; returns its listening
     * socket. It then lets its VMs go and exits; {@link #openWhenFree} waits for that.
     */
    private Fd askForHandover() throws java.io.IOException {
        if (stateDir == null)
            throw new CommandLine.ParameterException(
                    spec.commandLine(), "--takeover needs --state-dir: the VMs are taken over from it");
        ControlSocket.Answer a =
                ControlSocket.askForDescriptors(ControlSocket.beside(socket), "handover", List.of(), "gmem fc-handler");
        tools.jackson.databind.JsonNode r = Json.mapper().readTree(a.text());
        if (r.has("error") || a.fds().size() != 1) {
            for (Fd fd : a.fds()) fd.closeQuietly();
            throw new java.io.IOException("the handler on " + socket + " does not hand over: "
                    + (r.has("error")
                            ? r.path("error").asString()
                            : "it sent " + a.fds().size() + " descriptors"));
        }
        return a.fds().getFirst();
    }

    /** The state directory once the handler handing over has let it go (bounded by --shutdown-timeout, at least 10 s). */
    private StateDir openWhenFree(Path dir, String identity) throws java.io.IOException {
        long deadline = System.nanoTime() + Math.max(10, shutdownSeconds) * 1_000_000_000L;
        while (true) {
            try {
                return StateDir.open(dir, identity);
            } catch (java.io.IOException e) {
                if (System.nanoTime() > deadline) throw e;
                sleepQuietly(5);
            }
        }
    }

    /** {@code --drain}, {@code --graduate}: the daemon's answer, as JSON (--json) or one line; exit 1 if it refused. */
    private int ask(String request) throws java.io.IOException {
        PrintWriter out = spec.commandLine().getOut();
        String reply = ControlSocket.ask(ControlSocket.beside(socket), request);
        tools.jackson.databind.JsonNode r = Json.mapper().readTree(reply);
        if (r.has("error"))
            throw new java.io.IOException(
                    "the handler on " + socket + " says: " + r.path("error").asString());
        if (json.on) out.println(reply);
        else if (r.has("draining"))
            out.println(
                    spec.qualifiedName() + ": the handler on " + socket + " accepts no more VMs and exits after its "
                            + r.path("draining").size() + " live ones: " + r.path("draining"));
        else
            out.println(spec.qualifiedName() + ": graduating sessions " + r.path("graduating") + " of the handler on "
                    + socket);
        out.flush();
        return 0;
    }

    /** The daemon's answer to one control request. */
    private static ControlSocket.Reply answer(
            FcHandler handler, String request, Runnable drained, java.util.function.Consumer<String> handedOver) {
        if (request.equals("stats")) return ControlSocket.Reply.of(oneLine(handler.stats()));
        if (request.equals("drain")) {
            List<Long> left = handler.drain();
            drained.run();
            return ControlSocket.Reply.of(oneLine(java.util.Map.of("draining", left)));
        }
        if (request.equals("graduate") || request.startsWith("graduate ")) {
            Long id = request.equals("graduate")
                    ? null
                    : Long.valueOf(request.substring(9).strip());
            List<Long> asked = handler.graduateNow(id);
            if (id != null && asked.isEmpty())
                return ControlSocket.Reply.of(oneLine(java.util.Map.of("error", "no live session " + id)));
            return ControlSocket.Reply.of(oneLine(java.util.Map.of("graduating", asked)));
        }
        if (request.equals("handover")) {
            // the listening socket goes to the new handler; once it has it, the sessions are let go (their records
            // stay in the state directory, which the new handler takes them from) and this process ends
            FcHandler.Handover h;
            try {
                h = handler.handOver();
            } catch (IllegalStateException e) {
                return ControlSocket.Reply.of(oneLine(java.util.Map.of("error", e.getMessage())));
            }
            return new ControlSocket.Reply(
                    oneLine(java.util.Map.of("handing_over", h.sessions())), List.of(h.listener()), () -> {
                        handler.release();
                        handedOver.accept("handed over");
                    });
        }
        return ControlSocket.Reply.of(oneLine(java.util.Map.of(
                "error", "unknown request '" + request + "'; ask for stats, graduate, drain or handover")));
    }

    /** {@code --stats}: the running handler's statistics, as it sent them (--json) or as a table. */
    private int printStats() throws java.io.IOException {
        PrintWriter out = spec.commandLine().getOut();
        String reply = ControlSocket.ask(ControlSocket.beside(socket), "stats");
        if (json.on) {
            out.println(reply);
            out.flush();
            return 0;
        }
        tools.jackson.databind.JsonNode s = Json.mapper().readTree(reply);
        if (s.has("error"))
            throw new java.io.IOException("the handler says: " + s.path("error").asString());
        out.printf(
                Locale.ROOT,
                "%s on %s: up %.1f s; %d VMs served: %d live, %d graduated, %d VMM exited, %d failed%n",
                spec.qualifiedName(),
                socket,
                s.path("uptime_ms").asDouble() / 1000,
                s.path("sessions").asLong(),
                s.path("live").size(),
                s.path("graduated").asLong(),
                s.path("vmm_exited").asLong(),
                s.path("failed").asLong());
        out.println("  session      pid    uid     age s    faults  fault pages  prefetched  zero pages  removes"
                + "  EEXIST  EAGAIN  p50 us  p99 us  max us  takeovers");
        for (tools.jackson.databind.JsonNode v : s.path("live"))
            statsRow(out, v.path("session").asString(), v, v.path("counts"));
        statsRow(out, "total", null, s.path("total"));
        out.flush();
        return 0;
    }

    private static void statsRow(
            PrintWriter out, String name, tools.jackson.databind.JsonNode who, tools.jackson.databind.JsonNode c) {
        tools.jackson.databind.JsonNode l = c.path("latency");
        out.printf(
                Locale.ROOT,
                "  %-8s %7s %6s %9s %9d %12d %11d %11d %8d %7d %7d %7.1f %7.1f %7.1f  %s%n",
                name,
                who == null ? "" : who.path("pid").asString(),
                who == null ? "" : who.path("uid").asString(),
                who == null
                        ? ""
                        : String.format(Locale.ROOT, "%.1f", who.path("age_ms").asDouble() / 1000),
                c.path("faults").asLong(),
                c.path("fault_pages").asLong(),
                c.path("prefetch_pages").asLong(),
                c.path("zero_pages").asLong(),
                c.path("removes").asLong(),
                c.path("races_lost").asLong(),
                c.path("retries").asLong(),
                l.path("p50_us").asDouble(),
                l.path("p99_us").asDouble(),
                l.path("max_us").asDouble(),
                who == null || who.path("takeovers").asInt() == 0
                        ? ""
                        : String.format(
                                Locale.ROOT,
                                "%d (%d faults waiting, the first served %.1f ms after%s)",
                                who.path("takeovers").asInt(),
                                who.path("waiting_at_takeover").asLong(),
                                who.path("resumed_ms").asDouble(),
                                who.path("since_death_ms").asDouble() < 0
                                        ? ""
                                        : String.format(
                                                Locale.ROOT,
                                                ", %.0f ms after the last handler was last seen alive",
                                                who.path("since_death_ms").asDouble())));
    }

    private String ended(Session.Report r) {
        var c = r.counts();
        if (json.on) {
            return oneLine(new Ended(
                    "ended",
                    r.id(),
                    r.pid(),
                    r.uid(),
                    r.end().name().toLowerCase(Locale.ROOT),
                    r.reason(),
                    c.faults(),
                    c.faultPages(),
                    c.prefetchPages(),
                    c.zeroPages(),
                    r.graduatedMs(),
                    r.prefetchMs()));
        }
        return String.format(
                Locale.ROOT,
                "%s: session %d (pid %d, uid %d): %s%s; %d faults, %d pages by faults, %d prefetched, %d zero pages%s",
                spec.qualifiedName(),
                r.id(),
                r.pid(),
                r.uid(),
                r.end().name().toLowerCase(Locale.ROOT).replace('_', ' '),
                r.reason() == null ? "" : " (" + r.reason() + ")",
                c.faults(),
                c.faultPages(),
                c.prefetchPages(),
                c.zeroPages(),
                r.graduatedMs() < 0 ? "" : String.format(Locale.ROOT, "; graduated after %.1f ms", r.graduatedMs()));
    }

    private static String oneLine(Object o) {
        return Json.oneLine(o);
    }

    private static void line(PrintWriter out, String s) {
        synchronized (out) {
            out.println(s);
            out.flush();
        }
    }
}
