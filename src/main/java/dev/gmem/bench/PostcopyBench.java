package dev.gmem.bench;

import dev.gmem.fault.UffdMode;
import dev.gmem.linux.Posix;
import dev.gmem.memory.GuestMemory;
import dev.gmem.migrate.PageServer;
import dev.gmem.migrate.RemoteSource;
import dev.gmem.migrate.Tls;
import dev.gmem.restore.Destination;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.Consumer;
import javax.net.ssl.SSLContext;

/**
 * {@code gmem bench postcopy}: a page server and a lazy restore fed from it in this process, over
 * loopback and through a proxy that adds 1 ms each way, on a synthetic guest of half data:
 * <ul>
 *   <li>fault round trips (a fault's request until its page is in place, as the fault engine times
 *       it) of one thread touching data pages in a random order through C, idle (no push) and while
 *       the push runs at full speed; beside them the local lazy restore's (the floor) and a 4 KiB
 *       echo's round trip on the same path;
 *   <li>push throughput until every data page is in place, plain and TLS 1.3, with and without LZ4,
 *       interleaved round by round (medians); in the same rounds, the install floor: {@code write()}
 *       of as many bytes from memory into a fresh memfd, on one thread, as the destination writes
 *       each pushed page, so that no push can be faster (it tells a slow push from a host slow to
 *       allocate pages);
 *   <li>the time until fully resident, and the same with 5 connection resets during it.
 * </ul>
 */
public final class PostcopyBench {
    private PostcopyBench() {}

    public record Options(long size, int rounds, int touches, long warmBytes, Path dir) {}

    public record Latency(String path, String load, long faults, double p50Us, double p99Us, double maxUs) {}

    public record Push(String transport, boolean lz4, double medianGibPerS, double medianResidentMs) {}

    public record Resident(String kind, double residentMs, int reconnects) {}

    public record Echo(String path, double p50Us, double p99Us) {}

    /** {@code write()} of the guest's data bytes from memory into a fresh memfd, one thread: medians. */
    public record InstallFloor(double medianGibPerS, double medianMs) {}

    public record Report(
            long guestBytes,
            long dataBytes,
            List<Latency> latency,
            List<Echo> echo,
            List<Push> push,
            InstallFloor installFloor,
            List<Resident> resident,
            double tlsCost) {}

    public static Report run(Options o, Consumer<String> progress) throws Exception {
        Path work = dev.gmem.util.OutputFile.scratchDirectory(o.dir(), "gmem-bench-postcopy-");
        try {
            BenchSupport.warmMemory(BenchSupport.warmBytes(o.warmBytes()));
            Path raw = work.resolve("guest.raw");
            progress.accept("writing a " + (o.size() >> 20) + " MiB guest of half data");
            ImageSynth.generate(raw, o.size(), new ImageSynth.Mix(0.2, 0.3, 0.1), 7, 2, b -> {});
            progress.accept("making certificates for TLS");
            TestCerts certs = TestCerts.make(work.resolve("certs"), "ip:127.0.0.1", "dns:localhost");
            SSLContext serverTls =
                    Tls.context(Tls.Identity.pkcs12(certs.p12("server"), TestCerts.PASSWORD.toCharArray()), certs.ca());
            SSLContext clientTls =
                    Tls.context(Tls.Identity.pkcs12(certs.p12("client"), TestCerts.PASSWORD.toCharArray()), certs.ca());
            try (Arena floorArena = Arena.ofConfined();
                    PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.RAW);
                    PageServer plain = serve(source, false, null);
                    PageServer plainLz4 = serve(source, true, null);
                    PageServer tls = serve(source, false, serverTls);
                    PageServer tlsLz4 = serve(source, true, serverTls);
                    FaultProxy delayed = new FaultProxy(loopback(), plain.address(), 1.0, 0);
                    FaultProxy resetting = new FaultProxy(loopback(), plain.address(), 0, 0)) {
                long[] dataPages = dataPages(source);
                List<Latency> latency = new ArrayList<>();
                List<Echo> echo = new ArrayList<>();
                progress.accept("fault round trips: the local lazy restore (the floor)");
                latency.add(faults("local lazy restore", "idle", source, false, dataPages, o.touches()));
                for (boolean viaProxy : new boolean[] {false, true}) {
                    InetSocketAddress at = viaProxy ? delayed.address() : plain.address();
                    String path = viaProxy ? "proxy +1 ms each way" : "loopback";
                    for (boolean push : new boolean[] {false, true}) {
                        progress.accept("fault round trips: " + path + (push ? ", under the push" : ", idle"));
                        try (RemoteSource r = connect(at, null)) {
                            latency.add(faults(
                                    path, push ? "while the push runs" : "idle", r, push, dataPages, o.touches()));
                        }
                    }
                    progress.accept("4 KiB echo: " + path);
                    echo.add(echo(path, viaProxy ? 1.0 : 0));
                }
                // push throughput, the four ways interleaved round by round
                String[] names = {"plain", "plain", "tls", "tls"};
                boolean[] lz4 = {false, true, false, true};
                PageServer[] servers = {plain, plainLz4, tls, tlsLz4};
                double[][] gibs = new double[4][o.rounds()];
                double[][] ms = new double[4][o.rounds()];
                double[] floorMs = new double[o.rounds()];
                long dataBytes = source.counts().dataBytes();
                MemorySegment floorSource = floorArena.allocate(dataBytes, Posix.pageSize());
                PopulationBench.fill(floorSource);
                // a first round of each way warms up, untimed: a first push runs while the server compiler
                // compiles beside it on the two cores, at 1.5-2x the time of later ones
                for (int round = -1; round < o.rounds(); round++) {
                    for (int k = 0; k < 4; k++) {
                        progress.accept("push: " + names[k] + (lz4[k] ? " with LZ4" : "")
                                + (round < 0 ? ", warming up" : ", round " + (round + 1) + "/" + o.rounds()));
                        try (RemoteSource r =
                                connect(servers[k].address(), names[k].equals("tls") ? clientTls : null)) {
                            double t = resident(r);
                            if (round < 0) continue;
                            ms[k][round] = t;
                            gibs[k][round] = BenchSupport.gibPerS(dataBytes, t);
                        }
                    }
                    progress.accept("install floor: write() into a fresh memfd"
                            + (round < 0 ? ", warming up" : ", round " + (round + 1) + "/" + o.rounds()));
                    double t = installFloor(source.size(), floorSource);
                    if (round >= 0) floorMs[round] = t;
                }
                double floorMedianMs = BenchSupport.median(floorMs);
                InstallFloor floor = new InstallFloor(
                        BenchSupport.round(BenchSupport.gibPerS(dataBytes, floorMedianMs)),
                        BenchSupport.round(floorMedianMs));
                List<Push> push = new ArrayList<>();
                for (int k = 0; k < 4; k++)
                    push.add(new Push(
                            names[k],
                            lz4[k],
                            BenchSupport.round(BenchSupport.median(gibs[k])),
                            BenchSupport.round(BenchSupport.median(ms[k]))));
                List<Resident> resident = new ArrayList<>();
                progress.accept("fully resident, and with 5 resets on the way");
                try (RemoteSource r = connect(plain.address(), null)) {
                    resident.add(new Resident(
                            "loopback",
                            BenchSupport.round(resident(r)),
                            r.stats().reconnects()));
                }
                try (RemoteSource r = connect(resetting.address(), null)) {
                    AtomicBoolean done = new AtomicBoolean();
                    Thread chaos = resetting.chaos(new Random(11), done, 5, -1, 0, 40, 40);
                    double t;
                    try {
                        t = resident(r);
                    } finally {
                        done.set(true);
                        chaos.join(10_000);
                    }
                    resident.add(new Resident(
                            "loopback, " + resetting.resets() + " resets on the way",
                            BenchSupport.round(t),
                            r.stats().reconnects()));
                }
                double tlsCost = 1 - push.get(2).medianGibPerS() / push.get(0).medianGibPerS();
                return new Report(
                        source.size(),
                        source.counts().dataBytes(),
                        latency,
                        echo,
                        push,
                        floor,
                        resident,
                        BenchSupport.round(tlsCost));
            }
        } finally {
            dev.gmem.util.OutputFile.removeScratch(work);
        }
    }

    private static InetSocketAddress loopback() {
        return new InetSocketAddress("127.0.0.1", 0);
    }

    private static PageServer serve(PageSource source, boolean lz4, SSLContext tls) throws IOException {
        return PageServer.start(loopback(), source, new PageServer.Options(Duration.ofSeconds(5), lz4, tls), l -> {});
    }

    private static RemoteSource connect(InetSocketAddress at, SSLContext tls) throws IOException {
        return RemoteSource.connect(
                "127.0.0.1",
                at.getPort(),
                new RemoteSource.Options(Duration.ofSeconds(30), Duration.ofSeconds(3), tls),
                l -> {});
    }

    /** Source offsets of every data page, shuffled once (the same order for every run). */
    private static long[] dataPages(PageSource source) {
        PageIndex index = new PageIndex(source);
        long[] all = new long[(int) source.counts().dataPages()];
        int n = 0;
        for (long o = 0; o < source.size(); o += 4096) {
            PageIndex.Location at = index.atFileOffset(o);
            if (at != null && at.kind() == PageKind.DATA) all[n++] = o;
        }
        Random rnd = new Random(5);
        for (int i = n - 1; i > 0; i--) {
            int j = rnd.nextInt(i + 1);
            long t = all[i];
            all[i] = all[j];
            all[j] = t;
        }
        return Arrays.copyOf(all, n);
    }

    /**
     * One thread touches up to {@code touches} data pages in the shuffled order, through C (a
     * fault's wait never holds up a safepoint), while the push runs ({@code push}) or with none; the
     * fault engine's latencies are the round trips.
     */
    private static Latency faults(String path, String load, PageSource source, boolean push, long[] pages, int touches)
            throws IOException {
        LazyRestore.Options options = new LazyRestore.Options(
                UffdMode.MISSING,
                dev.gmem.fault.OnRemove.ZERO,
                push,
                0,
                dev.gmem.fault.FaultEngine.Prefetch.DEFAULT.minBatch(),
                dev.gmem.fault.FaultEngine.Prefetch.DEFAULT.maxBatch());
        try (Destination dst = Destination.anonymous(GuestMemory.Backend.MEMFD, source);
                LazyRestore lazy = LazyRestore.start(source, dst.memory(), options);
                Arena arena = Arena.ofConfined()) {
            MemorySegment into = arena.allocate(4096, 4096);
            MemorySegment guest = lazy.memory();
            for (int i = 0; i < Math.min(touches, pages.length); i++) {
                if (push && lazy.engine().populatedNanos() > 0)
                    break; // the push is over: no load left to measure under
                Posix.copy(guest.asSlice(pages[i], 4096), into, 4096);
            }
            lazy.checkHealthy();
            dev.gmem.fault.Latency l = lazy.stats().latency();
            return new Latency(
                    path,
                    load,
                    l.count(),
                    BenchSupport.round(l.p50Us()),
                    BenchSupport.round(l.p99Us()),
                    BenchSupport.round(l.maxUs()));
        }
    }

    /** A lazy restore with the push and no touches: milliseconds until every data page is in place. */
    private static double resident(RemoteSource source) throws IOException {
        try (Destination dst = Destination.anonymous(GuestMemory.Backend.MEMFD, source);
                LazyRestore lazy =
                        LazyRestore.start(source, dst.memory(), LazyRestore.Options.defaults(UffdMode.MISSING))) {
            if (!lazy.awaitPopulated(120_000)) throw new IOException("the push did not finish in 120 s");
            Double ms = lazy.stats().populatedMs();
            return ms == null ? Double.NaN : ms;
        }
    }

    /**
     * One timed {@code write()} of {@code bytes} into a fresh memfd of {@code size} bytes, on one thread, as
     * the destination installs pushed pages; every byte is checked afterwards, untimed.
     */
    private static double installFloor(long size, MemorySegment bytes) throws IOException {
        return PopulationBench.timedPopulation(
                GuestMemory.Backend.MEMFD, dev.gmem.restore.Strategy.WRITE, 1, size, bytes, "the install floor");
    }

    /** A 4 KiB echo's round trip on the path: an echo server here, through the proxy when {@code delayMs} > 0. */
    private static Echo echo(String path, double delayMs) throws IOException, InterruptedException {
        try (ServerSocket server = new ServerSocket(0, 8, java.net.InetAddress.getLoopbackAddress())) {
            Thread t = Thread.ofPlatform().daemon().start(() -> {
                try (Socket s = server.accept();
                        InputStream in = s.getInputStream();
                        OutputStream out = s.getOutputStream()) {
                    s.setTcpNoDelay(true);
                    byte[] b = new byte[4096];
                    while (true) {
                        int n = in.readNBytes(b, 0, 4096);
                        if (n < 4096) return;
                        out.write(b);
                        out.flush();
                    }
                } catch (IOException ignored) {
                    // the echo ends with its client
                }
            });
            InetSocketAddress target = (InetSocketAddress) server.getLocalSocketAddress();
            FaultProxy proxy = delayMs > 0 ? new FaultProxy(loopback(), target, delayMs, 0) : null;
            try (Socket c = new Socket()) {
                c.setTcpNoDelay(true);
                c.connect(proxy == null ? target : proxy.address(), 5000);
                byte[] b = new byte[4096];
                int n = delayMs > 0 ? 300 : 3000;
                double[] us = new double[n];
                for (int i = -50; i < n; i++) {
                    long t0 = System.nanoTime();
                    c.getOutputStream().write(b);
                    c.getOutputStream().flush();
                    c.getInputStream().readNBytes(b, 0, 4096);
                    if (i >= 0) us[i] = (System.nanoTime() - t0) / 1e3;
                }
                Arrays.sort(us);
                return new Echo(path, BenchSupport.round(us[n / 2]), BenchSupport.round(us[(int) (n * 0.99)]));
            } finally {
                if (proxy != null) proxy.close();
                t.join(5000);
            }
        }
    }
}
