package dev.gmem.fc;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.SyscallException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * {@code gmem fc-keeper}: holds each VM's userfaultfd, and its VMM's pidfd, for the handlers that
 * serve it, so that a handler which may not take descriptors from the VMM ({@code pidfd_getfd}
 * needs ptrace rights: a jailed VMM under another uid) can still take a VM over after the serving
 * process died. It reads no event and maps no memory: holding a descriptor is all it does, so that
 * it has nothing to crash on while the handlers are restarted and upgraded.
 *
 * <p>Its socket ({@code PATH}, mode 0600) answers one request line per connection (see {@link
 * ControlSocket}): {@code keep KEY} with the userfaultfd and the pidfd attached, {@code give KEY}
 * (the reply carries a copy of the userfaultfd), {@code forget KEY}, and {@code list}. KEY is the
 * VM's key in the state directory ({@code vm-PID-START}). Threads: {@code gmem-fc-control} answers;
 * {@code gmem-fc-keeper-watch} waits on every pidfd and closes a VM's descriptors once its VMM has
 * exited, so that a VM no handler forgot is not held for ever.
 *
 * <p>What it survives: the death of every serving process (its descriptors outlive them), not its
 * own: a keeper that died holds nothing, and the VMs it held are then taken over only through
 * {@code pidfd_getfd}, where that is allowed.
 */
public final class Keeper implements AutoCloseable {
    /** How the keeper is named in errors of its clients. */
    public static final String NAME = "gmem fc-keeper";

    private static final Pattern KEY = Pattern.compile("vm-([0-9]{1,10})-([0-9]{1,20})");
    private static final String USERFAULTFD = "anon_inode:[userfaultfd]";
    private static final String PIDFD = "anon_inode:[pidfd]";

    /** A VM's descriptors, the keeper's own, since {@code since} (System.nanoTime). */
    private record Kept(int pid, Fd uffd, Fd pidfd, long since) {
        void close() {
            uffd.closeQuietly();
            pidfd.closeQuietly();
        }
    }

    /** One kept VM in a {@code list} reply. */
    public record Entry(String key, int pid, double heldMs) {}

    private final Object lock = new Object();
    /** Guarded by {@link #lock}. */
    private final Map<String, Kept> kept = new LinkedHashMap<>();

    private final Consumer<String> log;
    /** Written when {@link #kept} changes, so that the watcher polls the new set; and at close. */
    private final Fd changed;

    private final Thread watcher;
    private volatile boolean stopping;
    private ControlSocket control;

    private Keeper(Consumer<String> log) throws SyscallException {
        this.log = log;
        this.changed = Fd.eventfd(0, Linux.EFD_CLOEXEC);
        this.watcher = Thread.ofPlatform().name("gmem-fc-keeper-watch").daemon().unstarted(this::watch);
    }

    /** Listens on {@code socket} (a stale socket there is replaced, a live one refused) and keeps. */
    public static Keeper start(Path socket, Consumer<String> log) throws IOException {
        Keeper k = new Keeper(log);
        try {
            k.control = ControlSocket.startTakingDescriptors(socket, k::answer, log);
        } catch (IOException | RuntimeException e) {
            k.changed.closeQuietly();
            throw e;
        }
        k.watcher.start();
        return k;
    }

    public Path socket() {
        return control.path();
    }

    /** The VMs kept now, in the order they came. */
    public List<Entry> list() {
        long now = System.nanoTime();
        synchronized (lock) {
            List<Entry> out = new ArrayList<>();
            for (Map.Entry<String, Kept> e : kept.entrySet())
                out.add(new Entry(
                        e.getKey(), e.getValue().pid(), (now - e.getValue().since()) / 1e6));
            return out;
        }
    }

    private ControlSocket.Reply answer(ControlSocket.Request request) {
        List<Fd> fds = request.fds();
        try {
            String[] words = request.line().split(" ");
            String what = words[0];
            if (what.equals("list") && words.length == 1) {
                closeAll(fds);
                return ControlSocket.Reply.of(listJson());
            }
            if (words.length != 2 || !(what.equals("keep") || what.equals("give") || what.equals("forget"))) {
                closeAll(fds);
                return ControlSocket.Reply.of(
                        "error: unknown request '" + request.line() + "' (keep KEY, give KEY, forget KEY, list)");
            }
            Matcher m = KEY.matcher(words[1]);
            if (!m.matches()) {
                closeAll(fds);
                return ControlSocket.Reply.of("error: '" + words[1] + "' is not a VM's key (vm-PID-START)");
            }
            String key = words[1];
            int pid = Integer.parseInt(m.group(1));
            return switch (what) {
                case "keep" -> keep(key, pid, fds);
                case "give" -> {
                    closeAll(fds);
                    yield give(key);
                }
                default -> {
                    closeAll(fds);
                    yield ControlSocket.Reply.of(forget(key) ? "ok" : "ok: nothing was kept for " + key);
                }
            };
        } catch (IOException | RuntimeException e) {
            closeAll(fds);
            return ControlSocket.Reply.of("error: " + e.getMessage());
        }
    }

    /** Takes {@code fds} (the VM's userfaultfd, then its VMM's pidfd) as {@code key}'s, replacing any kept before. */
    private ControlSocket.Reply keep(String key, int pid, List<Fd> fds) throws IOException {
        if (fds.size() != 2) {
            closeAll(fds);
            return ControlSocket.Reply.of(
                    "error: keep takes two descriptors (the userfaultfd, the VMM's pidfd), not " + fds.size());
        }
        Fd uffd = fds.get(0), pidfd = fds.get(1);
        String problem = !USERFAULTFD.equals(kind(uffd))
                ? "the first descriptor is not a userfaultfd"
                : !PIDFD.equals(kind(pidfd))
                        ? "the second descriptor is not a pidfd"
                        : pidOf(pidfd) != pid ? "the pidfd is not of process " + pid : null;
        if (problem != null) {
            closeAll(fds);
            return ControlSocket.Reply.of("error: " + problem);
        }
        synchronized (lock) { // descriptors are closed under the lock only: the watcher polls a set taken under it
            Kept before = kept.put(key, new Kept(pid, uffd, pidfd, System.nanoTime()));
            if (before != null) before.close();
        }
        wakeWatcher();
        log.accept(key + ": kept (pid " + pid + ")");
        return ControlSocket.Reply.of("ok");
    }

    private ControlSocket.Reply give(String key) throws SyscallException {
        Fd copy;
        synchronized (lock) { // a copy, made under the lock: the watcher may close the kept one at any moment
            Kept k = kept.get(key);
            if (k == null) return ControlSocket.Reply.of("error: nothing is kept for " + key);
            copy = k.uffd().dup();
        }
        log.accept(key + ": its userfaultfd given to a handler");
        return ControlSocket.Reply.handing("ok", copy);
    }

    private boolean forget(String key) {
        synchronized (lock) {
            Kept k = kept.remove(key);
            if (k == null) return false;
            k.close();
        }
        wakeWatcher();
        log.accept(key + ": forgotten (its VM needs no handler any more)");
        return true;
    }

    private String listJson() {
        StringBuilder b = new StringBuilder("{\"kept\":[");
        List<Entry> entries = list();
        for (int i = 0; i < entries.size(); i++) {
            Entry e = entries.get(i);
            if (i > 0) b.append(',');
            b.append(String.format(
                    java.util.Locale.ROOT,
                    "{\"key\":\"%s\",\"pid\":%d,\"held_ms\":%.1f}",
                    e.key(),
                    e.pid(),
                    e.heldMs()));
        }
        return b.append("]}").toString();
    }

    /** Waits on every kept VMM's pidfd; one that exited has its descriptors closed. */
    private void watch() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment count = arena.allocate(ValueLayout.JAVA_LONG);
            while (!stopping) {
                List<String> keys = new ArrayList<>();
                List<Fd> watched = new ArrayList<>();
                watched.add(changed);
                Poller poller;
                synchronized (lock) { // built under the lock, which every close takes: each descriptor is open now
                    for (Map.Entry<String, Kept> e : kept.entrySet()) {
                        keys.add(e.getKey());
                        watched.add(e.getValue().pidfd());
                    }
                    poller = new Poller(Linux.POLLIN, watched.toArray(Fd[]::new));
                }
                // a pidfd closed meanwhile: the eventfd is written after every change, so this poll returns at
                // once (a closed number polls as invalid, and is told apart below) and the set is built again
                poller.poll(-1);
                if (stopping) return;
                if (poller.ready(0) != 0) changed.read(count);
                for (int i = 0; i < keys.size(); i++) {
                    if (poller.ready(i + 1) == 0) continue;
                    exited(keys.get(i), watched.get(i + 1));
                }
            }
        } catch (SyscallException | RuntimeException e) {
            if (!stopping) log.accept("watching the VMMs stopped: " + e.getMessage());
        }
    }

    private void exited(String key, Fd pidfd) {
        synchronized (lock) {
            Kept k = kept.get(key);
            if (k == null || k.pidfd() != pidfd) return; // forgotten or replaced meanwhile
            kept.remove(key);
            k.close();
        }
        log.accept(key + ": its VMM exited; its descriptors are closed");
    }

    private void wakeWatcher() {
        try {
            changed.eventfdAdd(1);
        } catch (SyscallException ignored) {
            // the counter is already non-zero: the watcher wakes anyway
        }
    }

    private static String kind(Fd fd) throws IOException {
        return Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd.number())).toString();
    }

    /** The process of a pidfd ({@code Pid:} in its fdinfo; -1 once that process has exited). */
    private static int pidOf(Fd pidfd) throws IOException {
        for (String l : Files.readAllLines(Path.of("/proc/self/fdinfo/" + pidfd.number())))
            if (l.startsWith("Pid:")) return Integer.parseInt(l.substring(4).strip());
        throw new IOException("descriptor " + pidfd.number() + " has no Pid in its fdinfo");
    }

    private static void closeAll(List<Fd> fds) {
        for (Fd fd : fds) fd.closeQuietly();
    }

    /** Stops answering and closes every descriptor kept (their VMs are then taken over only through pidfd_getfd). */
    @Override
    public void close() {
        stopping = true;
        control.close();
        try {
            changed.eventfdAdd(1);
        } catch (SyscallException ignored) {
            // the watcher also sees stopping on its next wake-up
        }
        try {
            watcher.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        synchronized (lock) {
            for (Kept k : kept.values()) k.close();
            kept.clear();
        }
        changed.closeQuietly();
    }

    // ---- the client side, for handlers ----

    /** Gives {@code key}'s userfaultfd and pidfd to the keeper at {@code socket} (they stay the caller's too). */
    public static void keep(Path socket, String key, Fd uffd, Fd pidfd) throws IOException {
        expectOk(socket, ControlSocket.askForDescriptors(socket, "keep " + key, List.of(uffd, pidfd), NAME));
    }

    /** A copy of {@code key}'s userfaultfd from the keeper at {@code socket} (the caller's to close). */
    public static Fd give(Path socket, String key) throws IOException {
        ControlSocket.Answer a = ControlSocket.askForDescriptors(socket, "give " + key, List.of(), NAME);
        try {
            expectOk(socket, a);
            if (a.fds().size() != 1)
                throw new IOException(
                        NAME + " at " + socket + " sent " + a.fds().size() + " descriptors, not one");
            if (!USERFAULTFD.equals(kind(a.fds().getFirst())))
                throw new IOException(NAME + " at " + socket + " sent a descriptor that is not a userfaultfd");
            return a.fds().getFirst();
        } catch (IOException | RuntimeException e) {
            closeAll(a.fds());
            throw e;
        }
    }

    /** Tells the keeper at {@code socket} that {@code key}'s VM needs no handler any more. */
    public static void forget(Path socket, String key) throws IOException {
        expectOk(socket, ControlSocket.askForDescriptors(socket, "forget " + key, List.of(), NAME));
    }

    private static void expectOk(Path socket, ControlSocket.Answer a) throws IOException {
        if (!a.text().startsWith("ok")) {
            closeAll(a.fds());
            throw new IOException(NAME + " at " + socket + ": " + a.text().replaceFirst("^error: ", ""));
        }
    }
}
