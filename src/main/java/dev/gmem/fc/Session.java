package dev.gmem.fc;

import dev.gmem.fault.FaultEngine;
import dev.gmem.fault.FaultEngineFailedException;
import dev.gmem.fault.FaultStats;
import dev.gmem.fault.ForeignTarget;
import dev.gmem.fault.OnFailure;
import dev.gmem.fault.OnRemove;
import dev.gmem.fault.PageProvider;
import dev.gmem.linux.UnixSockets;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.time.Duration;

/**
 * One VM served, from its handshake to its graduation: the VMM's userfaultfd adopted into a
 * {@link ForeignTarget}, its faults and a background prefetch served by a {@link FaultEngine} from
 * a page provider that every session of one snapshot shares, and, once every data page is in place,
 * the regions unregistered so that the VM no longer depends on this process. A failure leaves the
 * VM registered (frozen), for the caller's policy: it is never graduated onto zeros.
 *
 * <p>A session lives until its VM graduates, its VMM exits (its pidfd says so), or it fails. Served
 * with {@link Prefetch#OFF}, its VM is filled on demand alone until {@link #graduateSoon} starts the
 * prefetch (a handler that stops asks that of every live session).
 *
 * <p>The session owns the received descriptor (through its target) from {@link #start}; {@link
 * #close} stops its threads and closes it. Firecracker keeps its own copy. The pidfd is the caller's.
 */
public final class Session implements AutoCloseable {
    /** How a session ended. */
    public enum End {
        /** Every data page in place, the regions unregistered: the VM goes on alone. */
        GRADUATED,
        /** The engine stopped on an error; the VM is still registered, and waits. */
        FAILED,
        /** Not every data page was in place in time; the VM is still registered and served. */
        TIMED_OUT,
        /** The VMM exited first: its memory went with it (the kernel then refuses to unregister it, with ENOMEM). */
        VMM_EXITED
    }

    /** Background population of a session's VM. */
    public enum Prefetch {
        /** The snapshot's recorded access order first, then every data page by address; then graduate. The default. */
        ALL,
        /** Faults alone, until {@link #graduateSoon}. */
        OFF
    }

    /**
     * How long a graduated session goes on reading its userfaultfd's events before it closes. A
     * VMM thread that discarded memory (MADV_DONTNEED) just before the unregistration queues its
     * REMOVE event after it, and waits until a reader takes it; the VMM holds its own copy of the
     * descriptor, so once this process stops reading, that thread would wait forever.
     */
    static final Duration LINGER = Duration.ofSeconds(1);

    /** How long a failed engine's VMM is given to be seen gone (its address space goes before its pidfd says so). */
    private static final Duration EXIT_GRACE = Duration.ofSeconds(2);

    /** How often a waiting session looks at its VMM's pidfd. */
    private static final long EXIT_CHECK_MILLIS = 50;

    /**
     * A session's outcome: who, how it ended and why, its counters, when it graduated (ms after its
     * start, -1: not), and how long its prefetch took from its start to the last data page (ms, -1: none finished).
     */
    public record Report(
            long id,
            int pid,
            int uid,
            End end,
            String reason,
            FaultStats.Counts counts,
            double graduatedMs,
            double prefetchMs) {}

    private final long id;
    private final UnixSockets.PeerCredentials peer;
    private final dev.gmem.linux.Fd pidfd;
    private final FaultEngine engine;
    /** System.nanoTime() when this session took its VM over from a handler that is gone, or -1. */
    private long takenOverNanos = -1;
    /** Set once {@link #await} has graduated the VM: {@link #close} then lingers. */
    private volatile boolean graduated;

    private Session(long id, UnixSockets.PeerCredentials peer, dev.gmem.linux.Fd pidfd, FaultEngine engine) {
        this.id = id;
        this.peer = peer;
        this.pidfd = pidfd;
        this.engine = engine;
    }

    /**
     * Starts serving the VM of {@code handshake} (its descriptor is taken over) from {@code
     * provider}, which the sessions of one snapshot share. {@code pidfd} is the VMM's (see {@link
     * dev.gmem.linux.Pidfds}), opened while its connection proved it alive; it stays the caller's.
     * A fault also fills up to {@code faultAroundPages} following data pages of its chunk. {@code
     * dataFaults} (or null) hears the offset of each data page a fault brings in, before it is installed.
     */
    public static Session start(
            long id,
            Handshake handshake,
            UnixSockets.PeerCredentials peer,
            dev.gmem.linux.Fd pidfd,
            PageProvider provider,
            Prefetch prefetch,
            int faultAroundPages,
            java.util.function.LongConsumer dataFaults)
            throws IOException {
        return start(id, handshake, peer, pidfd, provider, prefetch, faultAroundPages, dataFaults, null, null);
    }

    /**
     * As above, with {@code journal} (or null) hearing every removal before any later fault is
     * served ({@code --state-dir}), and {@code takenOver} (or null) the removals of a VM whose
     * handler died: they read as zeros from the start, and every registered range is woken once
     * the engine runs, since faults the dead handler read and never resolved would sleep forever
     * (a woken thread whose page is still missing faults again, and is served).
     */
    public static Session start(
            long id,
            Handshake handshake,
            UnixSockets.PeerCredentials peer,
            dev.gmem.linux.Fd pidfd,
            PageProvider provider,
            Prefetch prefetch,
            int faultAroundPages,
            java.util.function.LongConsumer dataFaults,
            FaultEngine.Journal journal,
            java.util.List<long[]> takenOver)
            throws IOException {
        ForeignTarget target = null;
        try {
            // Firecracker asked for EVENT_REMOVE alone, and made the API handshake itself
            Userfaultfd uffd = Userfaultfd.adopt(handshake.uffd(), UffdFeature.EVENT_REMOVE.bit());
            target = ForeignTarget.of(uffd, handshake.regions());
            FaultEngine.Options options = new FaultEngine.Options(
                    OnRemove.ZERO,
                    faultAroundPages,
                    OnFailure.HOLD,
                    prefetch == Prefetch.ALL ? FaultEngine.Prefetch.DEFAULT : null,
                    dataFaults,
                    journal);
            FaultEngine engine =
                    FaultEngine.start(target, provider, options, takenOver == null ? java.util.List.of() : takenOver);
            target = null; // the engine's now: closing the session closes it
            Session session = new Session(id, peer, pidfd, engine);
            if (takenOver != null) {
                session.takenOverNanos = engine.startNanos();
                try {
                    ForeignTarget t = (ForeignTarget) engine.target();
                    for (dev.gmem.fault.ForeignRegion r : handshake.regions()) t.wake(r.sourceOffset(), r.length());
                } catch (IOException | RuntimeException e) {
                    session.close();
                    throw e;
                }
            }
            return session;
        } catch (IOException | RuntimeException e) {
            // the engine never took the target (its regions' page sizes differ from the source's, say)
            if (target != null) target.close();
            else handshake.close();
            throw e;
        }
    }

    public long id() {
        return id;
    }

    public UnixSockets.PeerCredentials peer() {
        return peer;
    }

    public FaultStats stats() {
        return engine.stats();
    }

    /** Pages this session has put in place: by faults (with fault-around), as zeros, and by the prefetch. */
    public long pagesInPlace() {
        FaultStats.Pages p = engine.stats().pages();
        return p.faultPages() + p.zeroPages() + p.prefetchPages();
    }

    /** Whether this session took its VM over from a handler that died or handed over. */
    public boolean takenOver() {
        return takenOverNanos >= 0;
    }

    /** For a VM taken over: the faults found waiting by the first read, or -1. */
    public long waitingAtTakeover() {
        return takenOver() ? engine.stats().firstReadFaults() : -1;
    }

    /** For a VM taken over: ms from the takeover to the first fault served here, or -1 (none yet, or not taken over). */
    public double resumedMs() {
        long first = engine.stats().firstServedNanos();
        return takenOver() && first >= 0 ? (first - takenOverNanos) / 1e6 : -1;
    }

    /** System.nanoTime() when the session started serving. */
    public long startNanos() {
        return engine.startNanos();
    }

    /** Starts filling every data page now, if this session was not already (so that it graduates). */
    public void graduateSoon() {
        engine.startPrefetch(FaultEngine.Prefetch.DEFAULT);
    }

    /**
     * Serves the VM until every data page is in place, then graduates it; or until its VMM exits,
     * the engine fails, or {@code limit} passes. Says how it ended.
     */
    public Report await(Duration limit) throws IOException {
        long deadline = System.nanoTime() + Math.min(limit.toNanos(), Long.MAX_VALUE / 4);
        try {
            while (true) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (engine.awaitPopulated(Math.max(0, Math.min(left, EXIT_CHECK_MILLIS)))) break;
                if (vmmGone()) return report(End.VMM_EXITED, "the VMM exited while it was served", -1);
                if (engine.closed())
                    return report(
                            End.TIMED_OUT,
                            "this handler stopped serving it before it graduated (a stop, or a handover)",
                            -1);
                if (left <= 0)
                    return report(
                            End.TIMED_OUT, "not every data page was in place after " + limit.toMillis() + " ms", -1);
            }
            try {
                engine.graduate();
            } catch (dev.gmem.linux.SyscallException e) {
                // the userfaultfd outlives the VMM's address space; UFFDIO_UNREGISTER on a dead one says ENOMEM
                // (ENOMEM could also be a real shortage: only a VMM that is gone ends the session this way)
                if (e.is(dev.gmem.linux.Errno.ENOMEM) && vmmGoneSoon()) {
                    return report(End.VMM_EXITED, "the VMM exited before its memory graduated", -1);
                }
                return report(End.FAILED, "its regions could not be unregistered: " + e.getMessage(), -1);
            }
            graduated = true;
            return report(End.GRADUATED, null, (engine.populatedNanos() - engine.startNanos()) / 1e6);
        } catch (FaultEngineFailedException e) {
            // copying into an address space that is gone fails too: that is a VMM that exited, not a failure to act on
            if (vmmGoneSoon()) return report(End.VMM_EXITED, "the VMM exited while it was served", -1);
            return report(End.FAILED, e.getMessage(), -1);
        } catch (IOException e) {
            return report(End.FAILED, e.getMessage(), -1);
        }
    }

    /**
     * Whether the VMM is gone, waiting up to {@link #EXIT_GRACE} for its pidfd to say so: an
     * exiting process loses its address space (copies then fail with ESRCH, an unregistration with
     * ENOMEM) before it has torn down its memory and its pidfd becomes readable.
     */
    private boolean vmmGoneSoon() throws IOException {
        return new dev.gmem.linux.Poller(dev.gmem.linux.Linux.POLLIN, pidfd).poll((int) EXIT_GRACE.toMillis()) > 0;
    }

    /**
     * After graduation: keeps reading the VMM's events for {@link #LINGER} (or until its VMM
     * exits), so that a discard in flight at the unregistration is never left waiting.
     */
    private void linger() throws IOException {
        long deadline = System.nanoTime() + LINGER.toNanos();
        while (System.nanoTime() < deadline && !vmmGone()) {
            try {
                Thread.sleep(EXIT_CHECK_MILLIS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
        }
    }

    /** The VMM's pidfd is readable once it has exited: exact, where a pid could have been reused. */
    private boolean vmmGone() throws IOException {
        return new dev.gmem.linux.Poller(dev.gmem.linux.Linux.POLLIN, pidfd).poll(0) > 0;
    }

    private Report report(End end, String reason, double graduatedMs) {
        double prefetchMs = graduatedMs >= 0 && engine.prefetchStartNanos() > 0
                ? (engine.populatedNanos() - engine.prefetchStartNanos()) / 1e6
                : -1;
        return new Report(
                id, peer.pid(), peer.uid(), end, reason, engine.stats().counts(), graduatedMs, prefetchMs);
    }

    /** Stops serving; a graduated session first reads its VMM's events for {@link #LINGER} more (see there). */
    @Override
    public void close() {
        if (graduated) {
            graduated = false;
            try {
                linger();
            } catch (IOException e) {
                // the pidfd cannot be polled: close now
            }
        }
        engine.close();
    }
}
