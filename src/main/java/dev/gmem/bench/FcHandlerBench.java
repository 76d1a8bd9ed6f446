package dev.gmem.bench;

import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code gmem fc-handler} against a C reference handler (one page per fault, as Firecracker's
 * on-demand example serves), both as daemons in their own processes, serving the same test VMM
 * ({@code uffd_peer.c}, a separate process that plays Firecracker), in one run:
 * <ul>
 *   <li><b>fault latency</b>, as the faulting thread sees it: one thread touching every page in a
 *       random order, no prefetch, handlers interleaved round by round after {@link #WARM_ROUNDS}
 *       untimed rounds; each touch of a page not yet in place (mincore says so) is a fault. Once with the VMM on the handlers' CPU, once on
 *       another (where waking a thread on the other CPU dominates);
 *   <li><b>prefetch</b>: a VMM that touches nothing, filled by gmem's background prefetch until it
 *       graduates: GiB/s of data copied into the other process;
 *   <li><b>many VMs</b>: N VMMs from one snapshot at once, each touching every page, with the
 *       handler's resident memory sampled throughout.
 * </ul>
 * Every VMM compares its memory with the memory file at its end: a wrong page fails the benchmark.
 */
public final class FcHandlerBench {
    private static final JsonMapper JSON = JsonMapper.builder().build();
    private static final long PEER_TIMEOUT_SECONDS = 300;
    /** Untimed rounds before the fault latency is measured. */
    private static final int WARM_ROUNDS = 3;

    private FcHandlerBench() {}

    public record Options(long size, int rounds, List<Integer> vms, long warmBytes, Path dir) {}

    /** One handler's fault latency: medians over the rounds of each round's figure. */
    public record Latency(
            String handler,
            String placement,
            int rounds,
            long faults,
            double p50Us,
            double p90Us,
            double p99Us,
            double maxUs,
            double touchedMs) {}

    /** gmem against the C reference in one placement: gmem's figure over the reference's. */
    public record Ratio(String handler, String placement, double p50, double p99, double touched) {}

    public record Prefetch(long dataBytes, int rounds, double prefetchMs, double graduatedMs, double gibPerS) {}

    public record Fleet(
            String handler,
            int vms,
            long rssIdleBytes,
            long rssPeakBytes,
            double touchedMsMedian,
            double touchedMsMax,
            int graduated) {}

    public record Report(
            long guestBytes,
            List<Latency> latency,
            List<Ratio> ratios,
            Prefetch prefetch,
            List<Fleet> fleet,
            long wrongPages,
            List<String> notes) {}

    /** What the test VMM printed at its end. */
    record PeerResult(
            long pid,
            long pages,
            long wrong,
            long touches,
            long faults,
            double touchedMs,
            double p50Ns,
            double p90Ns,
            double p99Ns,
            double maxNs) {
        static PeerResult parse(long pid, String line) throws IOException {
            Map<String, String> v = new HashMap<>();
            for (String kv : line.strip().split(" ")) {
                int eq = kv.indexOf('=');
                if (eq > 0) v.put(kv.substring(0, eq), kv.substring(eq + 1));
            }
            try {
                return new PeerResult(
                        pid,
                        Long.parseLong(v.get("pages")),
                        Long.parseLong(v.get("wrong")),
                        Long.parseLong(v.get("touches")),
                        Long.parseLong(v.get("faults")),
                        Double.parseDouble(v.get("touched_ms")),
                        Double.parseDouble(v.get("p50_ns")),
                        Double.parseDouble(v.get("p90_ns")),
                        Double.parseDouble(v.get("p99_ns")),
                        Double.parseDouble(v.get("max_ns")));
            } catch (RuntimeException e) {
                throw new IOException("the test VMM printed '" + line.strip() + "', not its counts");
            }
        }
    }

    public static Report run(Options o, Consumer<String> progress) throws IOException {
        List<String> why = new ArrayList<>();
        Optional<Path> peer = CProgram.build("uffd_peer", List.of("-pthread"), why);
        Optional<Path> reference = CProgram.build("fc_reference", List.of("-pthread"), why);
        if (peer.isEmpty() || reference.isEmpty()) throw new IOException(String.join("; ", why));
        Files.createDirectories(o.dir());
        Path work = dev.gmem.util.OutputFile.scratchDirectory(o.dir(), "gmem-bench-fc-");
        List<String> notes = new ArrayList<>();
        try {
            int cpus = Runtime.getRuntime().availableProcessors();
            Path raw = work.resolve("memory.raw");
            Path snap = work.resolve("memory.snap");
            progress.accept("synthesizing a " + (o.size() >> 20) + " MiB memory file and its snapshot");
            ImageSynth.generate(raw, o.size(), new ImageSynth.Mix(0, 0, 0), o.size(), cpus, b -> {});
            try (RawImage image = RawImage.open(raw, null, cpus, b -> {})) {
                SnapshotWriter.pack(image, snap, Codec.LZ4, new long[0], b -> {});
            }
            long warm = BenchSupport.warmBytes(o.warmBytes());
            if (warm > 0) {
                progress.accept("warming up " + (warm >> 20) + " MiB of memory");
                BenchSupport.warmMemory(warm);
            }
            Bench b = new Bench(peer.get(), reference.get(), raw, snap, work, o, progress);
            List<Latency> latency = new ArrayList<>();
            List<Ratio> ratios = new ArrayList<>();
            boolean pin = cpus >= 2 && taskset();
            if (!pin)
                notes.add(
                        cpus < 2
                                ? "one CPU: the VMM and the handlers share it; no placement apart"
                                : "no taskset: the VMM and the handlers run where the scheduler puts them");
            for (String placement : pin ? List.of("same CPU", "other CPU") : List.of("any CPU")) {
                List<Latency> round = b.latency(placement, pin);
                latency.addAll(round);
                Latency c = round.getLast();
                for (Latency g : round.subList(0, round.size() - 1))
                    ratios.add(new Ratio(
                            g.handler(),
                            placement,
                            BenchSupport.round(g.p50Us() / c.p50Us()),
                            BenchSupport.round(g.p99Us() / c.p99Us()),
                            BenchSupport.round(g.touchedMs() / c.touchedMs())));
            }
            Prefetch prefetch = b.prefetch();
            List<Fleet> fleet = b.fleet();
            return new Report(o.size(), latency, ratios, prefetch, fleet, b.wrong, notes);
        } finally {
            dev.gmem.util.OutputFile.removeScratch(work);
        }
    }

    private static boolean taskset() {
        try {
            Process p = new ProcessBuilder("taskset", "-c", "0", "true")
                    .redirectErrorStream(true)
                    .start();
            p.getInputStream().readAllBytes();
            return p.waitFor(10, TimeUnit.SECONDS) && p.exitValue() == 0;
        } catch (IOException e) {
            return false;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return false;
        }
    }

    /** One run's files, binaries and running totals. */
    private static final class Bench {
        final Path peer;
        final Path reference;
        final Path raw;
        final Path snap;
        final Path work;
        final Options o;
        final Consumer<String> progress;
        long wrong;
        int sockets;

        Bench(Path peer, Path reference, Path raw, Path snap, Path work, Options o, Consumer<String> progress) {
            this.peer = peer;
            this.reference = reference;
            this.raw = raw;
            this.snap = snap;
            this.work = work;
            this.o = o;
            this.progress = progress;
        }

        Path socket() {
            return work.resolve("h" + (++sockets) + ".sock");
        }

        /** gmem (fault-around as it ships, and one page per fault) and the C reference, handlers on CPU 0. */
        List<Latency> latency(String placement, boolean pin) throws IOException {
            List<String> onZero = pin ? List.of("taskset", "-c", "0") : List.of();
            List<String> vmmCpu = !pin ? List.of() : List.of("taskset", "-c", placement.equals("same CPU") ? "0" : "1");
            List<Handler> handlers = new ArrayList<>();
            try {
                handlers.add(
                        Handler.gmem("gmem", onZero, socket(), raw, work, List.of("--prefetch", "off"))); // as it ships
                handlers.add(Handler.gmem(
                        "gmem, one page per fault",
                        onZero,
                        socket(),
                        raw,
                        work,
                        List.of("--prefetch", "off", "--fault-around", "0")));
                handlers.add(Handler.reference(onZero, socket(), reference, raw, work));
                int n = handlers.size();
                double[][] p50 = new double[n][o.rounds()], p90 = new double[n][o.rounds()];
                double[][] p99 = new double[n][o.rounds()], max = new double[n][o.rounds()];
                double[][] touched = new double[n][o.rounds()], faults = new double[n][o.rounds()];
                // untimed rounds first: a daemon serves many VMs, and its compiler has reached its steady state by then
                for (int round = -WARM_ROUNDS; round < o.rounds(); round++) {
                    progress.accept("fault latency, VMM on the " + placement + ", round " + (round + WARM_ROUNDS + 1)
                            + " of " + (o.rounds() + WARM_ROUNDS) + (round < 0 ? " (warm-up)" : ""));
                    for (int k = 0; k < n; k++) {
                        int h = Math.floorMod(k + round, n); // each round starts with another handler
                        Handler handler = handlers.get(h);
                        PeerResult r =
                                runPeers(handler, vmmCpu, 1, 1, 100 + round).getFirst();
                        handler.awaitEnded(r.pid());
                        if (round < 0) continue;
                        p50[h][round] = r.p50Ns() / 1000;
                        p90[h][round] = r.p90Ns() / 1000;
                        p99[h][round] = r.p99Ns() / 1000;
                        max[h][round] = r.maxNs() / 1000;
                        touched[h][round] = r.touchedMs();
                        faults[h][round] = r.faults();
                        BenchSupport.settle();
                    }
                }
                List<Latency> out = new ArrayList<>();
                for (int h = 0; h < n; h++)
                    out.add(new Latency(
                            handlers.get(h).name,
                            placement,
                            o.rounds(),
                            (long) BenchSupport.median(faults[h]),
                            BenchSupport.round(BenchSupport.median(p50[h])),
                            BenchSupport.round(BenchSupport.median(p90[h])),
                            BenchSupport.round(BenchSupport.median(p99[h])),
                            BenchSupport.round(BenchSupport.median(max[h])),
                            BenchSupport.round(BenchSupport.median(touched[h]))));
                return out;
            } finally {
                for (Handler h : handlers) h.close();
            }
        }

        /** A VMM that touches nothing, filled by gmem's prefetch until it graduates. */
        Prefetch prefetch() throws IOException {
            try (Handler gmem = Handler.gmem("gmem", List.of(), socket(), raw, work, List.of())) {
                double[] prefetchMs = new double[o.rounds()], graduatedMs = new double[o.rounds()];
                long data = 0;
                for (int round = -1; round < o.rounds(); round++) {
                    progress.accept("prefetch into another process, round " + (round + 2) + " of " + (o.rounds() + 1));
                    Process vmm = startPeer(gmem.socket, List.of(), 0, 0, true);
                    try {
                        JsonNode ended = gmem.awaitEnded(vmm.pid());
                        vmm.getOutputStream().write('g');
                        vmm.getOutputStream().flush();
                        PeerResult r = finish(vmm);
                        if (!"graduated".equals(ended.path("end").asString()))
                            throw new IOException("a VM filled by the prefetch did not graduate: " + ended);
                        data = ended.path("prefetch_pages").asLong() * 4096;
                        if (round >= 0) {
                            prefetchMs[round] = ended.path("prefetch_ms").asDouble();
                            graduatedMs[round] = ended.path("graduated_ms").asDouble();
                        }
                        if (r.pages() * 4096 != o.size()) throw new IOException("the VMM had " + r.pages() + " pages");
                    } finally {
                        reap(vmm);
                    }
                    BenchSupport.settle();
                }
                double ms = BenchSupport.median(prefetchMs);
                return new Prefetch(
                        data,
                        o.rounds(),
                        BenchSupport.round(ms),
                        BenchSupport.round(BenchSupport.median(graduatedMs)),
                        BenchSupport.round(BenchSupport.gibPerS(data, ms)));
            }
        }

        /** N VMMs at once from one snapshot, for each N, gmem (prefetch on) and the C reference. */
        List<Fleet> fleet() throws IOException {
            List<Fleet> out = new ArrayList<>();
            try (Handler gmem = Handler.gmem("gmem", List.of(), socket(), snap, work, List.of());
                    Handler c = Handler.reference(List.of(), socket(), reference, raw, work)) {
                for (int n : o.vms()) {
                    for (Handler h : List.of(gmem, c)) {
                        progress.accept(n + " VMs at once, " + h.name);
                        long idle = h.rss();
                        long[] peak = {idle};
                        Thread sampler = Thread.ofPlatform()
                                .name("gmem-bench-rss")
                                .daemon()
                                .start(() -> {
                                    while (!Thread.currentThread().isInterrupted()) {
                                        peak[0] = Math.max(peak[0], h.rss());
                                        try {
                                            Thread.sleep(5);
                                        } catch (InterruptedException e) {
                                            return;
                                        }
                                    }
                                });
                        List<PeerResult> rs;
                        int graduated = 0;
                        try {
                            rs = runPeers(h, List.of(), n, 1, 7 * n);
                            for (PeerResult r : rs) {
                                JsonNode ended = h.awaitEnded(r.pid());
                                if (ended != null
                                        && "graduated".equals(ended.path("end").asString())) graduated++;
                            }
                        } finally {
                            sampler.interrupt();
                            join(sampler);
                        }
                        double[] touched =
                                rs.stream().mapToDouble(PeerResult::touchedMs).toArray();
                        out.add(new Fleet(
                                h.name,
                                n,
                                idle,
                                peak[0],
                                BenchSupport.round(BenchSupport.median(touched)),
                                BenchSupport.round(BenchSupport.max(touched)),
                                graduated));
                        BenchSupport.settle();
                    }
                }
            }
            return out;
        }

        /** Runs {@code n} VMMs at once against {@code h}, each touching every page, and returns what each printed. */
        List<PeerResult> runPeers(Handler h, List<String> prefix, int n, int threads, long seed) throws IOException {
            List<Process> vmms = new ArrayList<>();
            try {
                for (int i = 0; i < n; i++) vmms.add(startPeer(h.socket, prefix, threads, seed + i, false));
                List<PeerResult> out = new ArrayList<>();
                for (Process p : vmms) out.add(finish(p));
                return out;
            } finally {
                for (Process p : vmms) reap(p);
            }
        }

        Process startPeer(Path socket, List<String> prefix, int threads, long seed, boolean pause) throws IOException {
            List<String> cmd = new ArrayList<>(prefix);
            cmd.addAll(List.of(peer.toString(), socket.toString(), Long.toString(o.size()), Integer.toString(threads)));
            ProcessBuilder pb = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.INHERIT);
            pb.environment().put("UFFD_PEER_COMPARE", raw.toString());
            if (seed != 0) pb.environment().put("UFFD_PEER_RANDOM", Long.toString(seed));
            if (pause) pb.environment().put("UFFD_PEER_PAUSE", "1");
            return pb.start();
        }

        /** Waits for a VMM's end and its counts; a wrong page or a failure fails the benchmark. */
        PeerResult finish(Process p) throws IOException {
            try { // its one line fits in the pipe: wait first, so that a VMM frozen by a handler never hangs the bench
                if (!p.waitFor(PEER_TIMEOUT_SECONDS, TimeUnit.SECONDS))
                    throw new IOException("a test VMM did not finish in " + PEER_TIMEOUT_SECONDS + " s");
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted");
            }
            String line = new String(p.getInputStream().readAllBytes(), StandardCharsets.US_ASCII);
            if (p.exitValue() != 0)
                throw new IOException("a test VMM failed (exit " + p.exitValue() + "; its error is above)");
            PeerResult r = PeerResult.parse(p.pid(), line);
            wrong += r.wrong();
            if (r.wrong() != 0)
                throw new IOException("a test VMM read " + r.wrong() + " wrong pages: the handler is broken");
            return r;
        }
    }

    static void reap(Process p) {
        p.destroyForcibly();
        try {
            p.waitFor(10, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    static void join(Thread t) {
        try {
            t.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** A handler daemon in its own process, its stdout read line by line. */
    private static final class Handler implements AutoCloseable {
        final String name;
        final Path socket;
        final Process process;
        final BlockingQueue<String> lines = new LinkedBlockingQueue<>();
        /** gmem's ended events by VMM pid, as they come; guarded by itself. */
        final Map<Long, JsonNode> ended = new HashMap<>();

        final boolean json;

        private Handler(String name, Path socket, Process process, boolean json) {
            this.name = name;
            this.socket = socket;
            this.process = process;
            this.json = json;
            Thread.ofPlatform().name("gmem-bench-handler-out").daemon().start(() -> {
                try (BufferedReader r =
                        new BufferedReader(new InputStreamReader(process.getInputStream(), StandardCharsets.UTF_8))) {
                    for (String l; (l = r.readLine()) != null; ) {
                        if (json && l.contains("\"event\":\"ended\"")) {
                            JsonNode e = JSON.readTree(l);
                            synchronized (ended) {
                                ended.put(e.path("pid").asLong(), e);
                                ended.notifyAll();
                            }
                        } else {
                            lines.add(l);
                        }
                    }
                } catch (IOException ignored) {
                    // the handler is gone: its waiters time out with a message
                }
            });
        }

        /** {@code gmem fc-handler} in a JVM like this one, serving {@code source} on {@code socket}. */
        static Handler gmem(String name, List<String> prefix, Path socket, Path source, Path work, List<String> extra)
                throws IOException {
            List<String> cmd = new ArrayList<>(prefix);
            cmd.add(ProcessHandle.current().info().command().orElse("java"));
            for (String a :
                    java.lang.management.ManagementFactory.getRuntimeMXBean().getInputArguments()) {
                if (!a.startsWith("-XX:TieredStopAtLevel")) cmd.add(a); // a daemon runs with the server compiler
            }
            cmd.addAll(List.of(
                    "-cp",
                    System.getProperty("java.class.path"),
                    "dev.gmem.cli.Main",
                    "fc-handler",
                    "--json",
                    "--socket",
                    socket.toString(),
                    "--snapshot",
                    source.toString()));
            cmd.addAll(extra);
            Handler h = new Handler(name, socket, start(cmd, work), true);
            return h.ready(l -> l.contains("\"event\":\"ready\""), "its ready line");
        }

        /** The C reference handler, serving the raw memory file on {@code socket}. */
        static Handler reference(List<String> prefix, Path socket, Path binary, Path raw, Path work)
                throws IOException {
            List<String> cmd = new ArrayList<>(prefix);
            cmd.addAll(List.of(binary.toString(), socket.toString(), raw.toString()));
            Handler h = new Handler("C reference", socket, start(cmd, work), false);
            return h.ready("ready"::equals, "ready");
        }

        /** This handler once it has said it is ready; stopped and reaped if it does not. */
        private Handler ready(java.util.function.Predicate<String> line, String description) throws IOException {
            try {
                awaitLine(line, description);
                return this;
            } catch (IOException | RuntimeException e) {
                close();
                throw e;
            }
        }

        private static Process start(List<String> cmd, Path work) throws IOException {
            return new ProcessBuilder(cmd)
                    .directory(work.toFile())
                    .redirectError(ProcessBuilder.Redirect.INHERIT)
                    .start();
        }

        String awaitLine(java.util.function.Predicate<String> what, String description) throws IOException {
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            try {
                while (true) {
                    String l =
                            lines.poll(Math.max(1, (deadline - System.nanoTime()) / 1_000_000), TimeUnit.MILLISECONDS);
                    if (l != null && what.test(l)) return l;
                    if (l == null && (System.nanoTime() > deadline || !process.isAlive()))
                        throw new IOException(name + " did not print " + description + " (its error is above)");
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new java.io.InterruptedIOException("interrupted");
            }
        }

        /** gmem's ended event for the VMM {@code pid}; for the C reference, which prints none, null. */
        JsonNode awaitEnded(long pid) throws IOException {
            if (!json) return null;
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            synchronized (ended) {
                while (!ended.containsKey(pid)) {
                    long left = (deadline - System.nanoTime()) / 1_000_000;
                    if (left <= 0 || !process.isAlive())
                        throw new IOException(name + " did not report the end of VM " + pid + " (its error is above)");
                    try {
                        ended.wait(Math.min(left, 100));
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new java.io.InterruptedIOException("interrupted");
                    }
                }
                return ended.remove(pid);
            }
        }

        /** The handler's resident memory now, from /proc (0 once it is gone). */
        long rss() {
            try {
                for (String l : Files.readAllLines(Path.of("/proc/" + process.pid() + "/status"))) {
                    if (l.startsWith("VmRSS:")) return Long.parseLong(l.replaceAll("[^0-9]", "")) * 1024;
                }
            } catch (IOException | NumberFormatException e) {
                return 0;
            }
            return 0;
        }

        @Override
        public void close() {
            process.destroy(); // SIGTERM: gmem graduates what it serves and removes its socket
            try {
                if (!process.waitFor(30, TimeUnit.SECONDS)) process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                process.destroyForcibly();
            }
        }
    }
}
