package dev.gmem.fc;

import dev.gmem.fault.FaultStats;
import dev.gmem.fault.PageProvider;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.SyscallException;
import dev.gmem.linux.UnixSockets;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The page-fault handler daemon: listens on a Unix socket and serves every connection as one
 * {@link Session}, all from one page provider. Threads: {@code gmem-fc-accept} accepts; each session
 * has {@code gmem-fc-session-N}, which receives its handshake, serves it to graduation and reports
 * it. {@link #close} stops accepting, waits (bounded) for every live session to graduate, so that no
 * VM is left depending on a handler that is gone, names the sessions it could not finish, and removes
 * the socket.
 */
public final class FcHandler implements AutoCloseable {
    /** What to do with a VM whose session failed (its source unreadable, a checksum wrong, an unexpected errno). */
    public enum OnFailure {
        /**
         * SIGKILL the VMM, through a pidfd opened when it connected (so a recycled pid is never
         * hit): a supervisor then sees a dead VM rather than a frozen one. The default.
         */
        KILL,
        /** Leave the VM registered and frozen, and report it. */
        KEEP
    }

    /**
     * {@code handshakeTimeout}: a client that sends nothing is dropped after it; {@code prefetch}:
     * each session's background population; {@code faultAroundPages}: the data pages after a
     * faulting one that a fault also fills; {@code onFailure}: the policy for a failed session;
     * {@code allowedUids}: the users whose VMMs are served (empty: any user that can reach the
     * socket, which is 0600); {@code recorder}: where every session's data faults are recorded
     * ({@code --record-access}), or null; {@code metrics}: where each session is watched, with its
     * id as the {@code session} label (the last {@link #ENDED_SERIES} ended ones keep their final
     * series), or null; {@code state}: where each VM's session is kept so that another handler
     * can serve it after this one died ({@code --state-dir}), or null; {@code keeper}: the socket of
     * a {@link Keeper} that holds each VM's descriptors (with a state directory), or null.
     */
    public record Options(
            Duration handshakeTimeout,
            Session.Prefetch prefetch,
            int faultAroundPages,
            OnFailure onFailure,
            java.util.Set<Integer> allowedUids,
            AccessRecorder recorder,
            dev.gmem.metrics.Metrics metrics,
            StateDir state,
            Path keeper) {
        public Options {
            allowedUids = java.util.Set.copyOf(allowedUids);
            if (faultAroundPages < 0 || faultAroundPages > MAX_FAULT_AROUND)
                throw new IllegalArgumentException("fault-around must be 0 to " + MAX_FAULT_AROUND + " pages");
        }

        public Options(
                Duration handshakeTimeout,
                Session.Prefetch prefetch,
                int faultAroundPages,
                OnFailure onFailure,
                java.util.Set<Integer> allowedUids) {
            this(handshakeTimeout, prefetch, faultAroundPages, onFailure, allowedUids, null, null, null, null);
        }

        public Options withRecorder(AccessRecorder r) {
            return new Options(
                    handshakeTimeout, prefetch, faultAroundPages, onFailure, allowedUids, r, metrics, state, keeper);
        }

        public Options withMetrics(dev.gmem.metrics.Metrics m) {
            return new Options(
                    handshakeTimeout, prefetch, faultAroundPages, onFailure, allowedUids, recorder, m, state, keeper);
        }

        public Options withState(StateDir d) {
            return new Options(
                    handshakeTimeout, prefetch, faultAroundPages, onFailure, allowedUids, recorder, metrics, d, keeper);
        }

        public Options withKeeper(Path k) {
            return new Options(
                    handshakeTimeout, prefetch, faultAroundPages, onFailure, allowedUids, recorder, metrics, state, k);
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(5), Session.Prefetch.ALL, 3, OnFailure.KILL, java.util.Set.of());
        }
    }

    /** The most pages a fault fills: 1 MiB of 4 KiB pages, well under a chunk. */
    public static final int MAX_FAULT_AROUND = 255;

    private static final Duration FOREVER = Duration.ofDays(365);

    /**
     * A live session at one moment: who, for how long, and its counters. For a VM taken over:
     * {@code takeovers}, the faults that waited across this takeover, {@code resumedMs} from the
     * takeover's start to the first fault served, and {@code sinceDeathMs} from the last sign of
     * life of the handler before (within {@link StateDir#BEAT_MILLIS}) to that fault; -1 otherwise.
     */
    public record SessionStats(
            long session,
            int pid,
            int uid,
            double ageMs,
            int takeovers,
            long waitingAtTakeover,
            double resumedMs,
            double sinceDeathMs,
            FaultStats.Counts counts) {}

    /**
     * The handler at one moment: how long it has run, the sessions it has started (one per VM whose
     * handshake it took), how the ended ones ended, each live session, and the counters over every
     * session.
     */
    public record Stats(
            double uptimeMs,
            long sessions,
            long graduated,
            long vmmExited,
            long failed,
            long timedOut,
            List<SessionStats> live,
            FaultStats.Counts total) {}

    private final Path socket;
    private final Fd listener;
    private final long startNanos = System.nanoTime();
    /** Guarded by {@link #live}: how the ended sessions ended, their counters, their latencies merged. */
    private final Map<Session.End, Long> ended = new java.util.EnumMap<>(Session.End.class);

    private final List<FaultStats.Counts> endedCounts = new ArrayList<>();
    /** Guarded by {@link #live}: how many times each live session's VM has been taken over. */
    private final Map<Long, Integer> takeovers = new java.util.HashMap<>();
    /** When the handler that held the state directory before this one was last seen alive (System.nanoTime), or -1. */
    private final long previousSeenNanos;

    private long started;
    private final org.HdrHistogram.Histogram endedLatency = dev.gmem.fault.Latency.histogram();
    private final Fd stop;
    private final Providers providers;

    /**
     * Where each session's pages come from: one provider that every session shares (a local
     * source), or one of its own per session (a remote source: each VM is a post-copy destination
     * of its own, with its own push).
     */
    public interface Providers {
        /** The provider for a new session. */
        PageProvider open() throws IOException;

        /** The session is over: its provider is let go. */
        void close(PageProvider p);

        /** {@code p} for every session; closed by its owner, not here. */
        static Providers shared(PageProvider p) {
            return new Providers() {
                @Override
                public PageProvider open() {
                    return p;
                }

                @Override
                public void close(PageProvider ignored) {}
            };
        }
    }

    private final long sourceSize;
    private final Options options;
    private final Consumer<Session.Report> reports;
    private final Consumer<String> log;
    private final AtomicLong ids = new AtomicLong();
    private final Map<Long, Thread> live = new LinkedHashMap<>();
    private final Map<Long, Session> sessions = new LinkedHashMap<>();
    private final Thread acceptor;
    private volatile boolean stopping;
    private boolean acceptingStopped;
    /** Guarded by this: the listening socket went to another handler ({@link #handOver}). */
    private volatile boolean handedOver;
    /** Set by {@link #stop} (guarded by {@link #live}): a session that starts now is filled at once. */
    private boolean graduatingAll;

    private FcHandler(
            Path socket,
            Fd listener,
            Providers providers,
            long sourceSize,
            Options options,
            Consumer<Session.Report> reports,
            Consumer<String> log)
            throws SyscallException {
        this.socket = socket;
        this.listener = listener;
        this.stop = Fd.eventfd(0, Linux.EFD_CLOEXEC);
        this.providers = providers;
        this.sourceSize = sourceSize;
        this.options = options;
        this.reports = reports;
        this.log = log;
        long seen = options.state() == null ? -1 : options.state().lastSeenAlive();
        this.previousSeenNanos = seen < 0 ? -1 : System.nanoTime() - (System.currentTimeMillis() - seen) * 1_000_000;
        this.acceptor = Thread.ofPlatform().name("gmem-fc-accept").start(this::accept);
    }

    /**
     * Listens on {@code socket} (mode 0600) and starts serving. An existing socket there is replaced
     * only if nothing listens on it; anything else there is refused.
     *
     * @param reports hears each session's end
     * @param log hears one line for each event worth a line (a refused handshake, say)
     */
    public static FcHandler start(
            Path socket,
            PageProvider provider,
            long sourceSize,
            Options options,
            Consumer<Session.Report> reports,
            Consumer<String> log)
            throws IOException {
        return start(socket, Providers.shared(provider), sourceSize, options, reports, log);
    }

    /** As {@link #start(Path, PageProvider, long, Options, Consumer, Consumer)}, each session's provider from {@code providers}. */
    public static FcHandler start(
            Path socket,
            Providers providers,
            long sourceSize,
            Options options,
            Consumer<Session.Report> reports,
            Consumer<String> log)
            throws IOException {
        clearStale(socket);
        Fd listener = UnixSockets.listen(socket, 64);
        try {
            Files.setPosixFilePermissions(socket, PosixFilePermissions.fromString("rw-------"));
            return adopt(socket, listener, providers, sourceSize, options, reports, log);
        } catch (IOException | RuntimeException e) {
            listener.closeQuietly();
            Files.deleteIfExists(socket);
            throw e;
        }
    }

    /**
     * As {@link #start}, on {@code listener}, a listening socket bound to {@code socket} that a
     * handler handing over gave this one ({@code --takeover}): connections waiting in its backlog
     * are kept. The VMs recorded in the options' state directory are taken over.
     */
    public static FcHandler adopt(
            Path socket,
            Fd listener,
            PageProvider provider,
            long sourceSize,
            Options options,
            Consumer<Session.Report> reports,
            Consumer<String> log)
            throws IOException {
        return adopt(socket, listener, Providers.shared(provider), sourceSize, options, reports, log);
    }

    /** As {@link #adopt(Path, Fd, PageProvider, long, Options, Consumer, Consumer)}, each session's provider from {@code providers}. */
    public static FcHandler adopt(
            Path socket,
            Fd listener,
            Providers providers,
            long sourceSize,
            Options options,
            Consumer<Session.Report> reports,
            Consumer<String> log)
            throws IOException {
        FcHandler h = new FcHandler(socket, listener, providers, sourceSize, options, reports, log);
        if (options.state() != null) h.takeOverRecorded(); // the VMs of a handler that died, or handed them over
        return h;
    }

    /** What a handler handing over gives the next one: its listening socket, and the sessions it lets go. */
    public record Handover(Fd listener, List<Long> sessions) {}

    /**
     * The first half of a handover to a new handler ({@code --takeover}): stops accepting, and
     * returns the listening socket (still bound at its path, which is left) and the live sessions.
     * Send the socket, then {@link #release}.
     *
     * @throws IllegalStateException without a state directory (the new handler takes the VMs from
     *     it), or once stopping
     */
    public Handover handOver() {
        if (options.state() == null)
            throw new IllegalStateException("this handler keeps no --state-dir: its VMs cannot be handed over");
        synchronized (this) {
            if (acceptingStopped) throw new IllegalStateException("this handler is stopping, or has handed over");
            handedOver = true;
        }
        stopAccepting();
        synchronized (live) {
            return new Handover(listener, new ArrayList<>(sessions.keySet()));
        }
    }

    /**
     * The second half of a handover: lets every session go without graduating it (its engine
     * closed, its record kept in the state directory for the new handler), waits (bounded) for
     * their threads, and closes the listening socket's copy here.
     */
    public void release() {
        List<Session> left;
        List<Thread> threads;
        synchronized (live) {
            left = new ArrayList<>(sessions.values());
            threads = new ArrayList<>(live.values());
        }
        for (Session s : left) s.close();
        for (Thread t : threads) join(t, 10_000);
        listener.closeQuietly();
    }

    /**
     * A socket left by a handler that is gone is removed; a live one, or anything that is not a
     * socket, is refused. {@link #start} does it; a caller may do it first, before it creates files
     * that a refused start would have spoilt.
     */
    public static void clearStale(Path socket) throws IOException {
        BasicFileAttributes a;
        try {
            a = Files.readAttributes(socket, BasicFileAttributes.class, LinkOption.NOFOLLOW_LINKS);
        } catch (java.nio.file.NoSuchFileException e) {
            return;
        }
        if (!a.isOther() || !"socket".equals(fileType(socket)))
            throw new IOException(socket + ": exists and is not a socket; gmem does not replace it");
        Fd probe;
        try {
            probe = UnixSockets.connect(socket);
        } catch (SyscallException e) {
            if (!e.is(Errno.ECONNREFUSED)) throw e;
            Files.delete(socket); // nobody listens: a stale socket
            return;
        }
        probe.closeQuietly();
        throw new IOException(socket + ": another handler listens there");
    }

    private static String fileType(Path p) throws IOException {
        Object mode = Files.getAttribute(p, "unix:mode", LinkOption.NOFOLLOW_LINKS);
        return ((Integer) mode & 0170000) == 0140000 ? "socket" : "other";
    }

    public Path socket() {
        return socket;
    }

    /** Ended sessions whose final series stay in the metrics; older ones are dropped, so a daemon's series stay bounded. */
    public static final int ENDED_SERIES = 64;

    private final java.util.ArrayDeque<Long> endedSeries = new java.util.ArrayDeque<>();

    private void finishMetrics(long id) {
        options.metrics().finish(Long.toString(id));
        synchronized (endedSeries) {
            endedSeries.add(id);
            while (endedSeries.size() > ENDED_SERIES) options.metrics().unwatch(Long.toString(endedSeries.remove()));
        }
    }

    /**
     * Starts filling session {@code id} now (or every live session, for null), so that it
     * graduates as soon as every data page is in place ({@code gmem fc-handler --graduate}).
     * Returns the sessions asked; empty when {@code id} is not live.
     */
    public List<Long> graduateNow(Long id) {
        List<Long> asked = new ArrayList<>();
        synchronized (live) {
            for (Map.Entry<Long, Session> e : sessions.entrySet()) {
                if (id != null && !id.equals(e.getKey())) continue;
                e.getValue().graduateSoon();
                asked.add(e.getKey());
            }
        }
        return asked;
    }

    /**
     * Stops accepting new VMs and removes the socket, so that another handler can listen there,
     * while the live sessions are served on to their ends ({@code gmem fc-handler --drain}).
     * Returns the sessions still live; {@link #liveSessions} says when none is left.
     */
    public List<Long> drain() {
        stopAccepting();
        synchronized (live) {
            return new ArrayList<>(live.keySet());
        }
    }

    private void stopAccepting() {
        synchronized (this) {
            if (acceptingStopped) return;
            acceptingStopped = true;
        }
        stopping = true;
        try {
            stop.eventfdAdd(1);
        } catch (SyscallException ignored) {
            // the acceptor also sees stopping on its next wake-up
        }
        join(acceptor, 5000);
        if (handedOver) return; // the socket is the next handler's now
        listener.closeQuietly();
        try {
            Files.deleteIfExists(socket);
        } catch (IOException e) {
            log.accept("cannot remove " + socket + ": " + e.getMessage());
        }
    }

    /** The handler's statistics now (for {@code gmem fc-handler --stats}). */
    public Stats stats() {
        synchronized (live) {
            long now = System.nanoTime();
            List<SessionStats> serving = new ArrayList<>();
            List<FaultStats.Counts> all = new ArrayList<>(endedCounts);
            org.HdrHistogram.Histogram latency = endedLatency.copy();
            for (Session s : sessions.values()) {
                FaultStats.Counts c = s.stats().counts();
                serving.add(new SessionStats(
                        s.id(),
                        s.peer().pid(),
                        s.peer().uid(),
                        (now - s.startNanos()) / 1e6,
                        takeovers.getOrDefault(s.id(), 0),
                        s.waitingAtTakeover(),
                        s.resumedMs(),
                        sinceDeathMs(s),
                        c));
                all.add(c);
                s.stats().addLatencyTo(latency);
            }
            return new Stats(
                    (now - startNanos) / 1e6,
                    started,
                    ended.getOrDefault(Session.End.GRADUATED, 0L),
                    ended.getOrDefault(Session.End.VMM_EXITED, 0L),
                    ended.getOrDefault(Session.End.FAILED, 0L),
                    ended.getOrDefault(Session.End.TIMED_OUT, 0L),
                    serving,
                    FaultStats.sum(all, latency));
        }
    }

    private double sinceDeathMs(Session s) {
        long first = s.stats().firstServedNanos();
        return s.takenOver() && first >= 0 && previousSeenNanos >= 0 ? (first - previousSeenNanos) / 1e6 : -1;
    }

    /** One line on how a VM taken over fared across it, for the log. */
    private String acrossTakeover(Session s) {
        double since = sinceDeathMs(s);
        return "session " + s.id() + ": across its takeover " + s.waitingAtTakeover() + " faults waited; "
                + (s.resumedMs() < 0
                        ? "no fault was served after it"
                        : String.format(
                                java.util.Locale.ROOT,
                                "the first fault was served %.1f ms after the takeover began%s",
                                s.resumedMs(),
                                since < 0
                                        ? ""
                                        : String.format(
                                                java.util.Locale.ROOT,
                                                ", %.1f ms after the handler before was last seen alive",
                                                since)));
    }

    /** Sessions being served now. */
    public int liveSessions() {
        synchronized (live) {
            return live.size();
        }
    }

    private void accept() {
        Poller poller = new Poller(Linux.POLLIN, listener, stop);
        while (!stopping) {
            try {
                if (poller.poll(-1) <= 0 || stopping) continue;
                if ((poller.ready(0) & Linux.POLLIN) == 0) continue;
                Fd conn = UnixSockets.accept(listener);
                long id = ids.incrementAndGet();
                Thread t = Thread.ofPlatform().name("gmem-fc-session-" + id).unstarted(() -> serve(id, conn));
                synchronized (live) {
                    live.put(id, t);
                }
                t.start();
            } catch (IOException | RuntimeException e) {
                if (!stopping) log.accept("accepting a connection failed: " + e.getMessage());
            }
        }
    }

    private void serve(long id, Fd conn) {
        Fd pidfd = null;
        try (conn) {
            UnixSockets.PeerCredentials peer = UnixSockets.peerCredentials(conn);
            if (!options.allowedUids().isEmpty() && !options.allowedUids().contains(peer.uid())) {
                log.accept("session " + id + " (pid " + peer.pid() + ", uid " + peer.uid() + "): refused: uid "
                        + peer.uid() + " is not allowed (--allow-uid)");
                return;
            }
            // opened now, while the connection proves the VMM alive: a later kill can never hit a recycled pid
            pidfd = dev.gmem.linux.Pidfds.open(peer.pid());
            Handshake h;
            try {
                h = Handshake.receive(conn, options.handshakeTimeout(), sourceSize);
            } catch (IOException e) {
                log.accept("session " + id + " (pid " + peer.pid() + ", uid " + peer.uid() + "): " + e.getMessage());
                return;
            }
            StateDir.Vm vm = null;
            if (options.state() != null) {
                try {
                    vm = options.state().record(peer.pid(), Takeover.startTime(peer.pid()), peer.uid(), h.regions());
                } catch (IOException e) {
                    h.close();
                    failedToStart(
                            id,
                            peer,
                            pidfd,
                            "cannot record it in " + options.state().path() + ": " + e.getMessage());
                    return;
                }
            }
            if (vm != null) keep(id, vm.key(), h.uffd(), pidfd);
            run(id, peer, pidfd, h, vm, null); // the connection stays open meanwhile: the VMM may write to it
        } catch (IOException | RuntimeException e) {
            log.accept("session " + id + ": " + e.getMessage());
        } finally {
            if (pidfd != null) pidfd.closeQuietly();
            synchronized (live) {
                live.remove(id);
            }
        }
    }

    /**
     * Serves one VM to its end: its handshake {@code h} (taken over), its record in the state
     * directory {@code vm} (or null), and {@code takenOver}: null for a new VM, else the removals
     * of a VM whose handler died.
     */
    private void run(
            long id, UnixSockets.PeerCredentials peer, Fd pidfd, Handshake h, StateDir.Vm vm, List<long[]> takenOver)
            throws IOException {
        PageProvider provider;
        try {
            provider = providers.open();
        } catch (IOException | RuntimeException e) {
            h.close();
            failedToStart(id, peer, pidfd, "cannot reach its source: " + e.getMessage());
            if (vm != null) {
                vm.close();
                forget(vm.key());
            }
            return;
        }
        try {
            run(id, peer, pidfd, h, vm, takenOver, provider);
        } finally {
            providers.close(provider);
        }
    }

    private void run(
            long id,
            UnixSockets.PeerCredentials peer,
            Fd pidfd,
            Handshake h,
            StateDir.Vm vm,
            List<long[]> takenOver,
            PageProvider provider)
            throws IOException {
        boolean metricsFinished = false;
        Session opened;
        try {
            opened = Session.start(
                    id,
                    h,
                    peer,
                    pidfd,
                    provider,
                    options.prefetch(),
                    options.faultAroundPages(),
                    options.recorder(),
                    vm,
                    takenOver);
        } catch (IOException | RuntimeException e) {
            failedToStart(id, peer, pidfd, "cannot be served: " + e.getMessage());
            if (vm != null) {
                vm.close();
                forget(vm.key());
            }
            return;
        }
        try (vm;
                Session s = opened) { // the session's engine closes first: it reads its events into vm's buffer
            if (options.metrics() != null) options.metrics().watch(Long.toString(id), s.stats(), s::pagesInPlace);
            synchronized (live) {
                sessions.put(id, s);
                started++;
                if (graduatingAll) s.graduateSoon();
            }
            // served for as long as its VM needs it: until it graduates, its VMM exits, or it fails
            Session.Report r = s.await(FOREVER);
            if (s.takenOver()) log.accept(acrossTakeover(s));
            if (options.recorder() != null) options.recorder().flush();
            synchronized (live) {
                ended.merge(r.end(), 1L, Long::sum);
                endedCounts.add(r.counts());
                s.stats().addLatencyTo(endedLatency);
                sessions.remove(id); // counted as ended from now on, not as live
            }
            reports.accept(r);
            if (options.metrics() != null) finishMetrics(id);
            metricsFinished = true;
            if (r.end() == Session.End.FAILED) onFailure(r, pidfd);
            // a VM this handler stopped serving unfinished keeps its record, for the next handler
            if (vm != null && r.end() != Session.End.TIMED_OUT) forget(vm.key());
        } finally {
            synchronized (live) {
                sessions.remove(id);
                takeovers.remove(id);
            }
            // its final values stay, however it ended
            if (options.metrics() != null && !metricsFinished) finishMetrics(id);
        }
    }

    /** A VM whose handshake was taken but that cannot be served waits: it is a failed session, for the policy. */
    private void failedToStart(long id, UnixSockets.PeerCredentials peer, Fd pidfd, String reason) {
        Session.Report r = new Session.Report(
                id, peer.pid(), peer.uid(), Session.End.FAILED, reason, new FaultStats().counts(), -1, -1);
        synchronized (live) {
            started++;
            ended.merge(r.end(), 1L, Long::sum);
            endedCounts.add(r.counts());
        }
        reports.accept(r);
        onFailure(r, pidfd);
    }

    /**
     * Takes over every VM recorded in the state directory by a handler that is gone, each on a
     * session thread of its own. A record that cannot be served again is named in the log and
     * dropped; its VMM, if still the same process, gets the failure policy.
     */
    private void takeOverRecorded() {
        List<StateDir.Recorded> recorded;
        try {
            recorded = options.state().recorded();
        } catch (IOException e) {
            log.accept("cannot read " + options.state().path() + ": " + e.getMessage());
            return;
        }
        for (StateDir.Recorded rec : recorded) {
            long id = ids.incrementAndGet();
            Thread t = Thread.ofPlatform().name("gmem-fc-session-" + id).unstarted(() -> takeOver(id, rec));
            synchronized (live) {
                live.put(id, t);
            }
            t.start();
        }
    }

    private void takeOver(long id, StateDir.Recorded rec) {
        String who = "session " + id + " (pid " + rec.pid() + ", taken over from " + rec.key() + ")";
        Fd pidfd = null;
        try {
            try {
                pidfd = dev.gmem.linux.Pidfds.open(rec.pid());
            } catch (SyscallException e) {
                log.accept(who + ": its VMM exited meanwhile; its record is removed");
                forget(rec.key());
                return;
            }
            // the pidfd is the process now: if it started when the record says, it is the VMM recorded
            if (Takeover.startTime(rec.pid()) != rec.startTime()) {
                log.accept(who + ": pid " + rec.pid() + " now belongs to another program; its record is removed");
                forget(rec.key());
                return;
            }
            UnixSockets.PeerCredentials peer = new UnixSockets.PeerCredentials(rec.pid(), rec.uid(), -1);
            if (rec.problem() != null) {
                failedToStart(id, peer, pidfd, "cannot be taken over: " + rec.problem());
                forget(rec.key());
                return;
            }
            StringBuilder from = new StringBuilder();
            Fd uffd;
            try {
                uffd = userfaultfd(pidfd, rec, from);
            } catch (IOException e) {
                log.accept(who + ": cannot take its userfaultfd again (" + e.getMessage()
                        + "); its record is kept for a handler that may");
                return;
            }
            int times;
            try {
                times = options.state().tookOver(rec);
            } catch (IOException | RuntimeException e) {
                uffd.closeQuietly();
                throw e;
            }
            log.accept(who + ": taken over (" + times + (times == 1 ? " time" : " times") + ", its userfaultfd "
                    + from + "), " + (rec.removed().size() - rec.unlogged()) + " removals recorded"
                    + (rec.unlogged() == 0
                            ? ""
                            : " and " + rec.unlogged() + " read but not yet recorded (found in its events buffer)")
                    + (previousSeenNanos < 0
                            ? ""
                            : String.format(
                                    java.util.Locale.ROOT,
                                    ", %.0f ms after its handler was last seen alive",
                                    (System.nanoTime() - previousSeenNanos) / 1e6)));
            keep(id, rec.key(), uffd, pidfd); // a keeper that restarted has it again
            synchronized (live) {
                takeovers.put(id, times);
            }
            StateDir.Vm vm;
            try {
                vm = options.state().reopen(rec.key());
                // the removals found only in the events buffer go into the log now: the next read clears the buffer,
                // and a handler dying after that must still find them
                List<long[]> all = rec.removed();
                for (long[] r : all.subList(all.size() - rec.unlogged(), all.size())) vm.removed(r[0], r[1]);
            } catch (IOException | RuntimeException e) {
                uffd.closeQuietly();
                throw e;
            }
            run(id, peer, pidfd, new Handshake(rec.regions(), uffd), vm, rec.removed());
        } catch (IOException | RuntimeException e) {
            log.accept(who + ": " + e.getMessage());
        } finally {
            if (pidfd != null) pidfd.closeQuietly();
            synchronized (live) {
                live.remove(id);
            }
        }
    }

    /**
     * A new copy of a recorded VM's userfaultfd: from the keeper, if there is one, else (or if it
     * has none) from the VMM itself; {@code from} is told which.
     */
    private Fd userfaultfd(Fd pidfd, StateDir.Recorded rec, StringBuilder from) throws IOException {
        String keeperSays = null;
        if (options.keeper() != null) {
            try {
                Fd fd = Keeper.give(options.keeper(), rec.key());
                from.append("from the keeper");
                return fd;
            } catch (IOException e) {
                keeperSays = e.getMessage();
            }
        }
        try {
            Fd fd = Takeover.userfaultfd(pidfd, rec.pid());
            from.append("from its VMM (pidfd_getfd)");
            return fd;
        } catch (IOException e) {
            throw keeperSays == null ? e : new IOException(keeperSays + "; from its VMM: " + e.getMessage(), e);
        }
    }

    /** Gives a VM's descriptors to the keeper, if there is one; a keeper that cannot take them costs a line, not the VM. */
    private void keep(long id, String key, Fd uffd, Fd pidfd) {
        if (options.keeper() == null) return;
        try {
            Keeper.keep(options.keeper(), key, uffd, pidfd);
        } catch (IOException | RuntimeException e) {
            log.accept("session " + id + ": not kept (" + e.getMessage() + "): it survives this handler's death"
                    + " only where pidfd_getfd is allowed");
        }
    }

    /** A VM that needs no handler any more (or cannot be served): its record goes, and the keeper lets it go. */
    private void forget(String key) {
        options.state().forget(key);
        if (options.keeper() == null) return;
        try {
            Keeper.forget(options.keeper(), key);
        } catch (IOException e) {
            log.accept(key + ": the keeper could not be told to let it go (" + e.getMessage()
                    + "); it does once the VMM exits");
        }
    }

    /** The failure policy, with a line that says what was done and why. */
    private void onFailure(Session.Report r, Fd pidfd) {
        String who = "session " + r.id() + " (pid " + r.pid() + ")";
        if (options.onFailure() == OnFailure.KEEP) {
            log.accept(who + ": failed, its VM left frozen (--on-failure keep): " + r.reason());
            return;
        }
        try {
            dev.gmem.linux.Pidfds.signal(pidfd, dev.gmem.linux.Pidfds.SIGKILL);
            log.accept(who + ": failed, its VMM killed (SIGKILL through its pidfd): " + r.reason());
        } catch (SyscallException e) {
            log.accept(who + ": failed, and its VMM could not be killed (" + e.errnoText() + "): " + r.reason());
        }
    }

    /**
     * Stops accepting, waits up to {@code shutdown} for the live sessions to graduate, and returns
     * the ids of those that did not (they are then stopped, their VMs left registered); removes the socket.
     */
    public List<Long> stop(Duration shutdown) {
        stopAccepting();
        long deadline = System.nanoTime() + shutdown.toNanos();
        List<Thread> threads;
        synchronized (live) {
            threads = new ArrayList<>(live.values());
            graduatingAll = true;
            for (Session s : sessions.values()) s.graduateSoon(); // those served on demand are filled now
        }
        for (Thread t : threads) join(t, Math.max(1, (deadline - System.nanoTime()) / 1_000_000));
        List<Long> unfinished = new ArrayList<>();
        List<Session> left;
        synchronized (live) {
            unfinished.addAll(live.keySet());
            left = new ArrayList<>(sessions.values());
        }
        for (Session s : left) s.close(); // outside the lock (a close joins threads); their threads then end
        stop.closeQuietly();
        return unfinished;
    }

    private static void join(Thread t, long millis) {
        try {
            t.join(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        stop(Duration.ZERO);
    }
}
