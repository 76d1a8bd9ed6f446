package dev.gmem.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import dev.gmem.testing.UffdPeer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code --state-dir}: the handler is SIGKILLed at a random moment while a VM restores, touching
 * every page in a random order from two threads while a balloon discards pages; a new handler on
 * the same state directory takes the VM over and the restore finishes with no wrong page, zeros
 * where pages were discarded, and no thread left blocked.
 */
class FcHandlerTakeoverTest {
    static final long SIZE = 128L << 20;
    static final int ROUNDS = Integer.getInteger("gmem.takeover.rounds", 20);

    @TempDir
    Path dir;

    @Test
    void aVmRestoresThroughAHandlerKilledAtARandomMoment() throws Exception {
        assumeTakeover();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 89);
        long seed = Long.getLong("gmem.takeover.seed", System.nanoTime());
        System.out.println("takeover test: seed " + seed + " (replay with -Dgmem.takeover.seed=" + seed + ")");
        Random rnd = new Random(seed);
        Tally t = new Tally();
        for (int round = 0; round < ROUNDS; round++) t.add(killRound(round, rnd, raw));
        System.out.println("takeover test: " + t.takenOver + " of " + ROUNDS
                + " VMs taken over, none dropped, "
                + t.recovered + " with removals found only in the killed handler's events buffer; longest fault wait "
                + t.longestWaitNs / 1_000_000
                + " ms; first fault served at most " + Math.round(t.longestSinceDeathMs)
                + " ms after the killed handler was last seen alive");
        assertThat(t.takenOver).as("some kills came before the VM was done").isPositive();
        assertThat(GmemProcess.crashLogs(dir)).isEmpty();
    }

    /**
     * {@code --keeper}: a keeper in a process of its own holds the VM's descriptors; the serving
     * handler, told to take them from the keeper first, is SIGKILLed mid-restore, and the next one
     * takes the VM over with the userfaultfd the keeper gives it. Once the VM has ended, the keeper
     * holds nothing; SIGTERM stops it with exit 0.
     */
    @Test
    void aKeeperCarriesTheVmsAcrossTheDeathOfTheServingProcess() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 91);
        Path keeperSocket = dir.resolve("keeper.sock");
        GmemProcess.Started keeper = GmemProcess.start(
                dir, List.of(), GmemProcess.classPath(), "fc-keeper", "--socket", keeperSocket.toString(), "--json");
        try {
            awaitReady(keeper);
            long seed = System.nanoTime();
            System.out.println("keeper test: seed " + seed);
            Random rnd = new Random(seed);
            Tally t = new Tally();
            for (int round = 0; round < 4; round++) {
                Outcome o = killRound(round, rnd, raw, "--keeper", keeperSocket.toString());
                t.add(o);
                if (o.takenOver())
                    assertThat(o.secondSaid()).as("round %d", round).contains("its userfaultfd from the keeper");
                // the VM has ended: the keeper lets its descriptors go (told by the handler, or seeing the VMM exit)
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (!keeperList(keeperSocket).equals("{\"kept\":[]}") && System.nanoTime() < deadline)
                    Thread.sleep(20);
                assertThat(keeperList(keeperSocket)).as("round %d", round).isEqualTo("{\"kept\":[]}");
            }
            System.out.println(
                    "keeper test: " + t.takenOver + " of 4 VMs taken over through the keeper; longest fault wait "
                            + t.longestWaitNs / 1_000_000 + " ms");
            assertThat(Files.readString(keeper.err())).contains(": kept (pid ");
        } finally {
            terminate(keeper);
            GmemProcess.Result r = keeper.await(Duration.ofSeconds(30));
            assertThat(r.timedOut()).isFalse();
            assertThat(r.exit()).as(r.toString()).isZero();
            assertThat(r.out()).contains("\"event\":\"stopped\"");
        }
    }

    /**
     * The instant a random kill almost never hits, made certain: the handler halts right after a
     * read of the VM's events that took a removal, before it recorded it
     * ({@code GMEM_INJECT_FAULT}). The next handler finds that removal in the events buffer,
     * which the kernel filled within the read, and records it; it is SIGKILLed in turn (its reads
     * of the later removals cleared the buffer), and a third handler serves the VM, which touches
     * nothing until then (served on demand): it reads zeros there, and no wrong page.
     */
    @Test
    void aRemovalReadButNotRecordedByAHandlerThatDiedStillReadsZeros() throws Exception {
        assumeTakeover();
        // the test VMM's first discard, the removal the handler dies holding, falls on a page with data in the
        // file (the first fixture that has some there): snapshot data served there instead of zeros would show
        long x = 88172645463325252L;
        x ^= x << 13;
        x ^= x >>> 7;
        x ^= x << 17;
        long firstDiscard = Long.remainderUnsigned(x, SIZE / 4096);
        Path raw = null;
        for (long seed = 93; seed < 103 && raw == null; seed++) {
            Path candidate = Fixtures.raw(dir, "raw-" + seed, SIZE, seed);
            byte[] page = new byte[4096];
            try (var ch = java.nio.channels.FileChannel.open(candidate)) {
                ch.read(java.nio.ByteBuffer.wrap(page), firstDiscard * 4096);
            }
            if (!java.util.Arrays.equals(page, new byte[4096])) raw = candidate;
            else Files.delete(candidate);
        }
        assertThat(raw).as("a fixture with data in page %d", firstDiscard).isNotNull();
        Path state = dir.resolve("state");
        Path socket = dir.resolve("fc.sock");
        GmemProcess.Started first = GmemProcess.start(
                dir,
                List.of("env", "GMEM_INJECT_FAULT=die-after-reading-a-removal"),
                GmemProcess.classPath(),
                daemonArgs(raw, socket, state, "off").toArray(String[]::new));
        Process vm = null;
        GmemProcess.Started second = null, third = null;
        try {
            awaitReady(first);
            vm = testVm(socket, SIZE, 0, raw, "vm.err", "UFFD_PEER_PAUSE", "1", "UFFD_PEER_DISCARDS", "100");
            assertThat(first.process().waitFor(30, TimeUnit.SECONDS)).isTrue();
            assertThat(first.process().exitValue())
                    .as(Files.readString(first.err()))
                    .isEqualTo(137);
            assertThat(Files.readString(first.err())).contains("halting after reading a removal");
            second = daemon(raw, socket, state, "off");
            awaitReady(second);
            // recorded VMs are taken over on session threads of their own, which may log after the ready line
            assertThat(awaitLog(second, "taken over ("))
                    .containsPattern("and [1-9][0-9]* read but not yet recorded \\(found in its events buffer\\)");
            // the second reads the later removals (the VM's discards wait for it), then dies too
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (Files.size(state.resolve(recordKey(state) + ".removed")) < 100 * 16 && System.nanoTime() < deadline)
                Thread.sleep(5);
            assertThat(Files.size(state.resolve(recordKey(state) + ".removed")))
                    .as("every removal is in the log, the recovered one too")
                    .isEqualTo(100 * 16);
            reap(second.process());
            third = daemon(raw, socket, state, "off");
            awaitReady(third);
            vm.getOutputStream().write('g');
            vm.getOutputStream().flush(); // its memory read on demand now, from the third handler
            finishesRight(vm, "the VM finishes; the third handler said " + Files.readString(third.err()));
        } finally {
            if (vm != null) reap(vm);
            reap(first.process());
            if (second != null) reap(second.process());
            if (third != null) {
                terminate(third);
                assertThat(third.await(Duration.ofSeconds(60)).timedOut()).isFalse();
            }
        }
    }

    private String keeperList(Path keeperSocket) throws Exception {
        GmemProcess.Result r = GmemProcess.run(
                Duration.ofSeconds(30), dir, "fc-keeper", "--socket", keeperSocket.toString(), "--list", "--json");
        assertThat(r.exit()).as(r.toString()).isZero();
        return r.out().strip();
    }

    /** Whether the keeper at {@code socket} holds no VM, asked in this process (a gmem process would take 0.3 s). */
    private static boolean keptNothing(Path socket) throws java.io.IOException {
        var a = dev.gmem.fc.ControlSocket.askForDescriptors(socket, "list", List.of(), dev.gmem.fc.Keeper.NAME);
        for (var fd : a.fds()) fd.closeQuietly();
        return a.text().contains("\"kept\":[]");
    }

    /** What one round of a kill and a takeover came to. */
    record Outcome(boolean takenOver, long longestWaitNs, double sinceDeathMs, String secondSaid) {}

    static final class Tally {
        int takenOver, recovered;
        long longestWaitNs;
        double longestSinceDeathMs;

        void add(Outcome o) {
            if (o.takenOver()) takenOver++;
            if (o.secondSaid().contains("read but not yet recorded")) recovered++;
            longestWaitNs = Math.max(longestWaitNs, o.longestWaitNs());
            longestSinceDeathMs = Math.max(longestSinceDeathMs, o.sinceDeathMs());
        }
    }

    /**
     * One round: a handler (with {@code more} options) serves a VM that faults from two threads
     * while discarding pages, is SIGKILLed at a random moment once the VM is recorded, and a second
     * handler on the same state directory finishes the restore.
     */
    private Outcome killRound(int round, Random rnd, Path raw, String... more) throws Exception {
        Path state = dir.resolve("state");
        Path socket = dir.resolve("fc.sock");
        String prefetch = round % 2 == 0 ? "off" : "all";
        GmemProcess.Started first = daemon(raw, socket, state, prefetch, more);
        Process vm = null;
        GmemProcess.Started second = null;
        try {
            awaitReady(first);
            if (round == 0) {
                GmemProcess.Result other = GmemProcess.run(
                        Duration.ofSeconds(60),
                        dir,
                        "fc-handler",
                        "--socket",
                        dir.resolve("other.sock").toString(),
                        "--snapshot",
                        raw.toString(),
                        "--state-dir",
                        state.toString());
                assertThat(other.exit()).as(other.toString()).isEqualTo(1);
                assertThat(other.err()).contains("another gmem fc-handler uses this state directory");
            }
            vm = testVm(
                    socket,
                    SIZE,
                    2,
                    raw,
                    "vm.err",
                    "UFFD_PEER_RANDOM",
                    Long.toString(round + 1),
                    "UFFD_PEER_DISCARDS",
                    "300");
            // mid-restore: once the handler has recorded the VM (a handler that dies before that, with the
            // handshake in flight, loses it: Firecracker sends it once, on a connection that dies with it)
            long recordedBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (recorded(state) == 0 && System.nanoTime() < recordedBy) Thread.sleep(1);
            assertThat(recorded(state))
                    .as("round %d: the VM is recorded", round)
                    .isEqualTo(1);
            // with a keeper: once the keeper holds the VM too (the handler gives it the descriptors just after
            // recording it; a kill between the two is taken over from the VMM, the path of the test above)
            int k = java.util.Arrays.asList(more).indexOf("--keeper");
            if (k >= 0) {
                Path keeperSocket = Path.of(more[k + 1]);
                long keptBy = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
                while (keptNothing(keeperSocket) && System.nanoTime() < keptBy) Thread.sleep(1);
                assertThat(keptNothing(keeperSocket))
                        .as("round %d: the keeper holds the VM", round)
                        .isFalse();
            }
            Thread.sleep(rnd.nextInt(400));
            first.process().destroyForcibly(); // SIGKILL: no chance to graduate or hand anything over
            assertThat(first.process().waitFor(10, TimeUnit.SECONDS)).isTrue();
            // what the first handler left, kept for a failure's message
            java.util.Map<String, byte[]> left = new java.util.TreeMap<>();
            try (var files = Files.list(state)) {
                for (Path f : files.toList()) left.put(f.getFileName().toString(), Files.readAllBytes(f));
            }
            second = daemon(raw, socket, state, prefetch, more);
            awaitReady(second);
            boolean finished = vm.waitFor(60, TimeUnit.SECONDS);
            assertThat(finished)
                    .as(
                            "round %d: the VM finishes its restore (%s); the first handler said %s; the second %s",
                            round, prefetch, Files.readString(first.err()), Files.readString(second.err()))
                    .isTrue();
            String out = new String(vm.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
            assertThat(vm.exitValue())
                    .as(
                            "round %d: %s; the second handler said %s",
                            round, Files.readString(dir.resolve("vm.err")), Files.readString(second.err()))
                    .isZero();
            assertThat(out)
                    .as(
                            "round %d (%s): %s; the first handler said %s; the second %s; it left %s",
                            round,
                            prefetch,
                            Files.readString(dir.resolve("vm.err")),
                            Files.readString(first.err()),
                            Files.readString(second.err()),
                            describe(left))
                    .contains(" wrong=0 ");
            long waitNs = Long.parseLong(out.replaceAll(".*max_ns=(\\d+).*\\s*", "$1"));
            // the VM ends with its VMM: the new handler forgets it, and nothing is left for a third
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (recorded(state) > 0 && System.nanoTime() < deadline) Thread.sleep(20);
            assertThat(recorded(state))
                    .as("round %d: its record is removed", round)
                    .isZero();
            String secondSaid = Files.readString(second.err());
            java.util.regex.Matcher since = java.util.regex.Pattern.compile(
                            "([0-9.]+) ms after the handler before was last seen alive")
                    .matcher(secondSaid);
            return new Outcome(
                    // a VMM that exited in the instant of the kill leaves a record, not a VM to take over
                    secondSaid.contains("taken over") && !secondSaid.contains("its VMM exited meanwhile"),
                    waitNs,
                    since.find() ? Double.parseDouble(since.group(1)) : 0,
                    secondSaid);
        } finally {
            if (vm != null) {
                reap(vm);
            }
            reap(first.process());
            if (second != null) {
                terminate(second);
                GmemProcess.Result r = second.await(Duration.ofSeconds(60));
                assertThat(r.timedOut()).isFalse();
            }
        }
    }

    /**
     * {@code --takeover}: a second handler process takes the socket and the VMs over from the first
     * while four VMs fault; the first exits 0, and every VM finishes with no wrong page. The
     * faults' p99 and longest wait, as the VMs saw them, are printed.
     */
    @Test
    void aNewHandlerTakesOverWhileFourVmsFault() throws Exception {
        assumeTakeover();
        long size = 2 * SIZE; // each VM still faulting when the new handler is up
        Path raw = Fixtures.raw(dir, "raw", size, 97);
        Path state = dir.resolve("state");
        Path socket = dir.resolve("fc.sock");
        GmemProcess.Started old = daemon(raw, socket, state, "off");
        GmemProcess.Started next = null;
        List<Process> vms = new java.util.ArrayList<>();
        try {
            awaitReady(old);
            for (int i = 0; i < 4; i++) {
                vms.add(testVm(
                        socket,
                        size,
                        1,
                        raw,
                        "vm-" + i + ".err",
                        "UFFD_PEER_RANDOM",
                        Long.toString(i + 1),
                        "UFFD_PEER_DISCARDS",
                        "200"));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
            while (recorded(state) < 4 && System.nanoTime() < deadline) Thread.sleep(1);
            assertThat(recorded(state)).isEqualTo(4);
            next = daemon(raw, socket, state, "off", "--takeover");
            GmemProcess.Result oldEnd = old.await(Duration.ofSeconds(60));
            assertThat(oldEnd.exit()).as(oldEnd.toString()).isZero();
            assertThat(oldEnd.out()).contains("\"signal\":\"handed over\"");
            awaitReady(next);
            long p99 = 0, max = 0;
            for (int i = 0; i < 4; i++) {
                Process vm = vms.get(i);
                assertThat(vm.waitFor(60, TimeUnit.SECONDS))
                        .as("VM %d finishes; the new handler said %s", i, Files.readString(next.err()))
                        .isTrue();
                String out = new String(vm.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
                assertThat(vm.exitValue())
                        .as(Files.readString(dir.resolve("vm-" + i + ".err")))
                        .isZero();
                assertThat(out).as("VM %d", i).contains(" wrong=0 ");
                p99 = Math.max(p99, Long.parseLong(out.replaceAll(".*p99_ns=(\\d+).*\\s*", "$1")));
                max = Math.max(max, Long.parseLong(out.replaceAll(".*max_ns=(\\d+).*\\s*", "$1")));
            }
            long takenOver = Files.readString(next.err())
                    .lines()
                    .filter(l -> l.contains("taken over (1 time,"))
                    .count();
            System.out.println("takeover test: --takeover with 4 VMs faulting: " + takenOver
                    + " taken over mid-restore; fault wait p99 (worst VM) " + p99 / 1000 + " us, longest "
                    + max / 1_000_000 + " ms");
            assertThat(takenOver).as(Files.readString(next.err())).isPositive();
        } finally {
            for (Process vm : vms) {
                reap(vm);
            }
            reap(old.process());
            if (next != null) {
                terminate(next);
                assertThat(next.await(Duration.ofSeconds(60)).timedOut()).isFalse();
            }
        }
    }

    /**
     * {@code --graduate}: a VM served on demand is filled and graduated on request, and runs on
     * correctly once every handler process is gone (SIGKILL); {@code --drain} then ends a handler
     * once its last VM has ended.
     */
    @Test
    void aGraduatedVmOutlivesEveryHandlerAndADrainedHandlerExits() throws Exception {
        Host.assumeUserfaultfd();
        UffdPeer.binary(); // built, or the test skipped with the reason
        Path raw = Fixtures.raw(dir, "raw", SIZE, 101);
        Path socket = dir.resolve("fc.sock");
        Path state = dir.resolve("state");
        for (boolean drain : new boolean[] {false, true}) {
            GmemProcess.Started d = daemon(raw, socket, state, "off");
            Process vm = null;
            try {
                awaitReady(d);
                vm = testVm(socket, SIZE, 0, raw, "vm.err", "UFFD_PEER_PAUSE", "1");
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                while (recorded(state) == 0 && System.nanoTime() < deadline) Thread.sleep(1);
                GmemProcess.Result asked = GmemProcess.run(
                        Duration.ofSeconds(60),
                        dir,
                        "fc-handler",
                        drain ? "--socket" : "--state-dir", // the directory alone finds the handler's socket
                        drain ? socket.toString() : state.toString(),
                        drain ? "--drain" : "--graduate");
                assertThat(asked.exit()).as(asked.toString()).isZero();
                if (drain) {
                    assertThat(socket).as("a drained handler accepts no more").doesNotExist();
                    vm.getOutputStream().write('g');
                    vm.getOutputStream().flush(); // its memory read on demand, then it exits: the handler follows
                    GmemProcess.Result r = d.await(Duration.ofSeconds(60));
                    assertThat(r.exit()).as(r.toString()).isZero();
                    assertThat(r.out()).contains("\"signal\":\"drained\"");
                } else {
                    while (!Files.readString(d.out()).contains("\"end\":\"graduated\"") && System.nanoTime() < deadline)
                        Thread.sleep(10);
                    assertThat(Files.readString(d.out())).contains("\"end\":\"graduated\"");
                    d.process().destroyForcibly(); // every handler gone
                    assertThat(d.process().waitFor(10, TimeUnit.SECONDS)).isTrue();
                    vm.getOutputStream().write('g');
                    vm.getOutputStream().flush();
                }
                finishesRight(vm, "the VM runs on");
            } finally {
                if (vm != null) {
                    reap(vm);
                }
                reap(d.process());
            }
        }
    }

    private GmemProcess.Started daemon(Path raw, Path socket, Path state, String prefetch, String... more)
            throws Exception {
        return GmemProcess.start(
                dir,
                List.of(),
                GmemProcess.classPath(),
                daemonArgs(raw, socket, state, prefetch, more).toArray(String[]::new));
    }

    private static List<String> daemonArgs(Path raw, Path socket, Path state, String prefetch, String... more) {
        List<String> args = new java.util.ArrayList<>(List.of(
                "fc-handler",
                "--socket",
                socket.toString(),
                "--snapshot",
                raw.toString(),
                "--state-dir",
                state.toString(),
                "--prefetch",
                prefetch,
                "--json"));
        args.addAll(List.of(more));
        return args;
    }

    /** The state files a handler left: each removal log as the addresses it names, the rest in short. */
    private static String describe(java.util.Map<String, byte[]> files) {
        StringBuilder b = new StringBuilder();
        files.forEach((name, bytes) -> {
            b.append(name).append(": ");
            if (name.endsWith(".removed")) {
                java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN);
                List<Long> starts = new java.util.ArrayList<>();
                while (bb.remaining() >= 16) {
                    starts.add(bb.getLong());
                    bb.getLong();
                }
                b.append(starts.size()).append(" removals at ").append(starts);
            } else if (name.endsWith(".json")) {
                b.append(new String(bytes, StandardCharsets.UTF_8));
            } else {
                b.append(bytes.length).append(" bytes").append(bytes.length > 0 ? ", first " + bytes[0] : "");
            }
            b.append("; ");
        });
        return b.toString();
    }

    /**
     * The test VMM on {@code socket}: {@code size} bytes touched by {@code threads} threads and
     * compared with {@code raw} at the end, its stderr in {@code err}; {@code env}: more of its
     * settings, as name, value pairs.
     */
    private Process testVm(Path socket, long size, int threads, Path raw, String err, String... env) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(
                        UffdPeer.binary().toString(), socket.toString(), Long.toString(size), Integer.toString(threads))
                .redirectError(dir.resolve(err).toFile());
        pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
        for (int i = 0; i < env.length; i += 2) pb.environment().put(env[i], env[i + 1]);
        return pb.start();
    }

    /** The test VMM {@code vm} (its stderr in vm.err) ends in time, with exit 0 and no wrong page. */
    private void finishesRight(Process vm, String what) throws Exception {
        assertThat(vm.waitFor(60, TimeUnit.SECONDS)).as(what).isTrue();
        String out = new String(vm.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
        assertThat(vm.exitValue()).as(Files.readString(dir.resolve("vm.err"))).isZero();
        assertThat(out).contains(" wrong=0 ");
    }

    /** Skips, with the reason, where a VM cannot be taken over: no userfaultfd, no ptrace rights, no test VMM. */
    private static void assumeTakeover() {
        Host.assumeUserfaultfd();
        org.junit.jupiter.api.Assumptions.assumeTrue(
                dev.gmem.fc.Takeover.mayTakeDescriptors(),
                "needs ptrace rights over the VMM to take its userfaultfd again (root or CAP_SYS_PTRACE)");
        UffdPeer.binary(); // built, or the test skipped with the reason
    }

    /** SIGKILL, and wait (bounded) for the end. */
    private static void reap(Process p) throws InterruptedException {
        p.destroyForcibly();
        p.waitFor(10, TimeUnit.SECONDS);
    }

    /** SIGTERM: a daemon's orderly stop. */
    private static void terminate(GmemProcess.Started d) throws Exception {
        new ProcessBuilder("kill", "-TERM", Long.toString(d.process().pid()))
                .start()
                .waitFor(10, TimeUnit.SECONDS);
    }

    /** The key of the one VM recorded in {@code state}. */
    private static String recordKey(Path state) throws Exception {
        try (var s = Files.list(state)) {
            String name = s.map(p -> p.getFileName().toString())
                    .filter(n -> n.endsWith(".json"))
                    .findFirst()
                    .orElseThrow();
            return name.substring(0, name.length() - ".json".length());
        }
    }

    private static long recorded(Path state) throws Exception {
        try (var s = Files.list(state)) {
            return s.filter(p -> p.getFileName().toString().endsWith(".json")).count();
        }
    }

    /** The daemon's log once it holds {@code text}, waiting up to 30 s; fails with the log otherwise. */
    private static String awaitLog(GmemProcess.Started d, String text) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            String said = Files.readString(d.err());
            if (said.contains(text)) return said;
            Thread.sleep(10);
        }
        throw new AssertionError("the daemon never said '" + text + "': " + Files.readString(d.err()));
    }

    private static void awaitReady(GmemProcess.Started d) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (System.nanoTime() < deadline) {
            if (Files.readString(d.out()).contains("\"event\":\"ready\"")) return;
            assertThat(d.process().isAlive())
                    .as("the daemon runs: %s", Files.readString(d.err()))
                    .isTrue();
            Thread.sleep(10);
        }
        throw new AssertionError("the daemon did not get ready: " + Files.readString(d.err()));
    }
}
