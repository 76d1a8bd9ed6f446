package dev.gmem.migrate;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import dev.gmem.testing.Host;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Post-copy over loopback, in one process: a page server and a lazy restore fed from it, verified page by page. */
@Timeout(40)
class PostcopyTest {
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    @Test
    void aLazyRestoreFromAPageServerIsRightPageByPage() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 41);
        Path snap = Fixtures.pack(raw, dir.resolve("snap"), Codec.LZ4);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        java.util.function.Consumer<String> logger = l -> {
            System.out.println("postcopy log: " + l);
            log.add(l);
        };
        for (Path served : new Path[] {raw, snap}) {
            for (boolean lz4 : new boolean[] {false, true}) {
                try (PageSource source = PageSources.open(served, null, 2, x -> {}, PageSources.Format.AUTO);
                        PageServer server = PageServer.start(
                                new InetSocketAddress("127.0.0.1", 0),
                                source,
                                new PageServer.Options(Duration.ofSeconds(5), lz4, null),
                                logger);
                        RemoteSource remote = RemoteSource.connect(
                                "127.0.0.1", server.address().getPort(), RemoteSource.Options.defaults(), logger)) {
                    assertThat(remote.size()).isEqualTo(source.size());
                    assertThat(remote.counts().dataPages())
                            .isEqualTo(source.counts().dataPages());
                    assertThat(remote.counts().zeroPages())
                            .isEqualTo(source.counts().zeroPages());
                    assertThat(remote.counts().holePages())
                            .isEqualTo(source.counts().holePages());
                    LazyRestore.Outcome o = LazyRestore.run(
                            remote,
                            GuestMemory.Backend.MEMFD,
                            LazyRestore.Options.defaults(UffdMode.MISSING),
                            new LazyRestore.Checks(2, 7, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
                    assertThat(o.verify().wrongPages())
                            .as("%s lz4=%s: %s", served, lz4, log)
                            .isZero();
                    assertThat(o.stats().complete()).isTrue();
                    RemoteSource.Stats s = remote.stats();
                    assertThat(s.pushedPages() + s.requestedPages())
                            .isGreaterThanOrEqualTo(source.counts().dataPages());
                    assertThat(server.stats())
                            .singleElement()
                            .satisfies(d -> assertThat(d.pushDone()).isTrue());
                    System.out.println("postcopy test: " + served.getFileName() + " lz4=" + lz4 + ": " + s + "; "
                            + server.stats());
                }
            }
        }
    }

    /**
     * Through a proxy that adds 1 ms each way and caps the bandwidth: every connection reset ten
     * times at random moments and stalled once (bytes stop, the sockets stay open) while a lazy
     * restore runs with two readers checking every page. The destination reconnects each time,
     * nothing is zero-filled, and no page is wrong.
     */
    @Test
    void aLazyRestoreSurvivesResetsAndAStallThroughADelayingProxy() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", 2 * SIZE, 43);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        long seed = System.nanoTime();
        java.util.Random rnd = new java.util.Random(seed);
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(
                        new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add);
                dev.gmem.bench.FaultProxy proxy = new dev.gmem.bench.FaultProxy(
                        new InetSocketAddress("127.0.0.1", 0), server.address(), 1.0, 24L << 20);
                RemoteSource remote = RemoteSource.connect(
                        "127.0.0.1",
                        proxy.address().getPort(),
                        new RemoteSource.Options(Duration.ofSeconds(20), Duration.ofMillis(800), null),
                        log::add)) {
            java.util.concurrent.atomic.AtomicBoolean done = new java.util.concurrent.atomic.AtomicBoolean();
            Thread chaos = proxy.chaos(rnd, done, 10, 5, 1500, 100, 150);
            LazyRestore.Outcome o;
            try {
                o = LazyRestore.run(
                        remote,
                        GuestMemory.Backend.MEMFD,
                        LazyRestore.Options.defaults(UffdMode.MISSING),
                        new LazyRestore.Checks(2, seed, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
            } finally {
                done.set(true);
                chaos.join(10_000);
            }
            RemoteSource.Stats s = remote.stats();
            System.out.println("postcopy test: through resets and a stall (seed " + seed + "): " + proxy.resets()
                    + " resets, " + s + "; " + log.size() + " log lines");
            assertThat(o.verify().wrongPages()).as("%s", log).isZero();
            assertThat(o.stats().complete()).isTrue();
            assertThat(proxy.resets()).as("the restore outlasted the resets").isEqualTo(10);
            assertThat(s.reconnects()).as("%s", log).isGreaterThanOrEqualTo(5);
            // the stall noticed: on a connection that carried pages, or on one reconnecting when it came
            assertThat(log)
                    .anySatisfy(l -> assertThat(l).containsAnyOf("silent for 800 ms", "sent no map within 800 ms"));
        }
    }

    /**
     * Through a proxy that adds 10 ms each way (a 20 ms round trip, a continent's): the map takes at
     * least the round trip, then a lazy restore with two readers checking every page, fed by the push
     * and by faults that each wait a round trip, is right page by page.
     */
    @Test
    void aLazyRestoreThroughTenMillisecondsEachWayIsRight() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE / 4, 47);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        long seed = System.nanoTime();
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(
                        new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add);
                dev.gmem.bench.FaultProxy proxy = new dev.gmem.bench.FaultProxy(
                        new InetSocketAddress("127.0.0.1", 0), server.address(), 10.0, 0)) {
            long start = System.nanoTime();
            try (RemoteSource remote = RemoteSource.connect(
                    "127.0.0.1", proxy.address().getPort(), RemoteSource.Options.defaults(), log::add)) {
                double mapMs = (System.nanoTime() - start) / 1e6;
                assertThat(mapMs).as("the map came through the delay").isGreaterThanOrEqualTo(20);
                LazyRestore.Outcome o = LazyRestore.run(
                        remote,
                        GuestMemory.Backend.MEMFD,
                        LazyRestore.Options.defaults(UffdMode.MISSING),
                        new LazyRestore.Checks(2, seed, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
                RemoteSource.Stats s = remote.stats();
                System.out.println("postcopy test: 10 ms each way (seed " + seed + "): the map in " + Math.round(mapMs)
                        + " ms, " + s + ", faults " + o.stats().latency());
                assertThat(o.verify().wrongPages()).as("%s", log).isZero();
                assertThat(o.stats().complete()).isTrue();
                assertThat(s.pushedPages() + s.requestedPages())
                        .isGreaterThanOrEqualTo(source.counts().dataPages());
                assertThat(s.reconnects()).as("%s", log).isZero();
            }
        }
    }

    /**
     * The push connection's send buffer is the one asked for (SO_SNDBUF, which the kernel doubles
     * and caps at net.core.wmem_max), and by default 1 MiB for a destination on loopback: read back
     * from the kernel with ss(8) on both of the source's sockets. The control connection keeps the
     * kernel's own sizing.
     */
    @Test
    void thePushConnectionsSendBufferIsBoundedAsAsked() throws Exception {
        Host.assumeUserfaultfd();
        org.junit.jupiter.api.Assumptions.assumeTrue(
                java.nio.file.Files.isExecutable(Path.of("/usr/bin/ss"))
                        || java.nio.file.Files.isExecutable(Path.of("/bin/ss")),
                "ss (iproute2) is not installed: the socket's buffer cannot be read back");
        Path raw = Fixtures.raw(dir, "raw", SIZE, 53);
        // a sysctl file answers one read only: Files.readString read it in two and got "4" of "4194304"
        long wmemMax = Long.parseLong(java.nio.file.Files.readAllLines(Path.of("/proc/sys/net/core/wmem_max"))
                .get(0)
                .strip());
        int asked = 128 << 10;
        assertThat(sourceSendBuffers(raw, asked, l -> {}))
                .as("asked for: the push's, doubled by the kernel; the control's is the kernel's")
                .hasSize(2)
                .containsOnlyOnce(2 * Math.min(asked, wmemMax));
        assertThat(sourceSendBuffers(raw, PageServer.Options.PUSH_SEND_BUFFER_AUTO, l -> {}))
                .as("by default, on loopback")
                .hasSize(2)
                .containsOnlyOnce(2 * Math.min(PageServer.Options.LOOPBACK_PUSH_SEND_BUFFER, wmemMax));
        // more than the kernel allows: it keeps wmem_max, and the source says so
        if (2 * wmemMax <= 1 << 30) {
            List<String> log = Collections.synchronizedList(new ArrayList<>());
            assertThat(sourceSendBuffers(raw, (int) (2 * wmemMax), log::add))
                    .as("capped")
                    .containsOnlyOnce(2 * wmemMax);
            assertThat(log)
                    .anySatisfy(l -> assertThat(l).contains("the push's send buffer is " + wmemMax + " bytes, not "));
        }
    }

    /**
     * A lazy restore from a source whose push connection gets {@code asked}: the send buffers of
     * the source's sockets as ss reads them, once every page is in place (both connections stay
     * open while the restore does).
     */
    private List<Long> sourceSendBuffers(Path raw, int asked, java.util.function.Consumer<String> log)
            throws Exception {
        return populated(
                raw,
                new PageServer.Options(Duration.ofSeconds(5), false, null, asked, 10),
                new RemoteSource.Options(Duration.ofSeconds(10), Duration.ofSeconds(3), null),
                log,
                server -> sendBuffers(server.address().getPort()));
    }

    /** What {@code probe} finds of a source and its destination once a lazy restore between them is populated. */
    private static <T> T populated(
            Path raw,
            PageServer.Options serving,
            RemoteSource.Options destination,
            java.util.function.Consumer<String> log,
            Probe<T> probe)
            throws Exception {
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(new InetSocketAddress("127.0.0.1", 0), source, serving, log);
                RemoteSource remote =
                        RemoteSource.connect("127.0.0.1", server.address().getPort(), destination, l -> {});
                dev.gmem.restore.Destination dst =
                        dev.gmem.restore.Destination.anonymous(GuestMemory.Backend.MEMFD, remote);
                LazyRestore lazy =
                        LazyRestore.start(remote, dst.memory(), LazyRestore.Options.defaults(UffdMode.MISSING))) {
            assertThat(lazy.awaitPopulated(30_000)).isTrue();
            return probe.find(server);
        }
    }

    @FunctionalInterface
    private interface Probe<T> {
        T find(PageServer server) throws Exception;
    }

    /** The send buffers (ss's "tb") of the established sockets whose local port is {@code port}. */
    private List<Long> sendBuffers(int port) throws Exception {
        Path out = dir.resolve("ss-" + port + ".txt");
        Process p = new ProcessBuilder("ss", "-tmnH", "state", "established", "( sport = :" + port + " )")
                .redirectErrorStream(true)
                .redirectOutput(out.toFile())
                .start();
        if (!p.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
            p.destroyForcibly().waitFor(5, java.util.concurrent.TimeUnit.SECONDS);
            throw new AssertionError("ss did not answer in 10 s");
        }
        String said = java.nio.file.Files.readString(out);
        assertThat(p.exitValue()).as(said).isZero();
        List<Long> tb = new ArrayList<>();
        java.util.regex.Matcher m =
                java.util.regex.Pattern.compile("\\btb(\\d+)").matcher(said);
        while (m.find()) tb.add(Long.parseLong(m.group(1)));
        return tb;
    }

    /**
     * The destination's push reader runs 10 nicer than the process by default, and at the
     * process's own priority with a push nice of 0 (a loaded host's other threads then do not
     * slow the push), as the kernel holds its nice value.
     */
    @Test
    void thePushReadersNiceValueFollowsTheOptions() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE / 4, 59);
        int mine = dev.gmem.linux.Posix.threadNice();
        assertThat(pushReaderNice(raw, 0)).as("push nice 0").containsOnly(mine);
        assertThat(pushReaderNice(raw, 10)).as("push nice 10").containsOnly(Math.min(19, mine + 10));
    }

    /** The nice values of the push reader threads of a lazy restore whose push runs {@code nicer} nicer. */
    private java.util.Collection<Integer> pushReaderNice(Path raw, int nicer) throws Exception {
        return populated(
                raw,
                new PageServer.Options(
                        Duration.ofSeconds(5), false, null, PageServer.Options.PUSH_SEND_BUFFER_AUTO, nicer),
                new RemoteSource.Options(Duration.ofSeconds(10), Duration.ofSeconds(3), null, nicer),
                l -> {},
                server -> {
                    // the push reader lives as long as its connection, which outlasts the population
                    java.util.Map<String, Integer> nice = dev.gmem.testing.ThreadNice.ofThreadsNamed("gmem-pc-push");
                    assertThat(nice).as("the push reader").isNotEmpty();
                    return nice.values();
                });
    }

    /** A source gone for good: the restore fails once the reconnect time-out has passed, naming the source; it does not hang. */
    @Test
    void aSourceGoneForGoodFailsTheRestoreAfterTheTimeout() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 47);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO)) {
            PageServer server = PageServer.start(
                    new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add);
            dev.gmem.bench.FaultProxy proxy =
                    new dev.gmem.bench.FaultProxy(new InetSocketAddress("127.0.0.1", 0), server.address(), 0, 8L << 20);
            try (RemoteSource remote = RemoteSource.connect(
                    "127.0.0.1",
                    proxy.address().getPort(),
                    new RemoteSource.Options(Duration.ofSeconds(2), Duration.ofMillis(800), null),
                    log::add)) {
                Thread killer = Thread.ofPlatform().start(() -> {
                    try {
                        Thread.sleep(300);
                    } catch (InterruptedException e) {
                        return;
                    }
                    server.close(); // gone: its port refuses from now on
                    proxy.close();
                });
                long t0 = System.nanoTime();
                org.assertj.core.api.Assertions.assertThatThrownBy(() -> LazyRestore.run(
                                remote,
                                GuestMemory.Backend.MEMFD,
                                LazyRestore.Options.defaults(UffdMode.MISSING),
                                new LazyRestore.Checks(1, 3, 0, Duration.ofMinutes(1), Duration.ofMinutes(1))))
                        .hasMessageContaining("127.0.0.1:" + proxy.address().getPort())
                        .hasMessageContaining("did not come back within 2 s");
                killer.join();
                assertThat((System.nanoTime() - t0) / 1e9)
                        .as("failed soon after the time-out")
                        .isLessThan(20);
            } finally {
                proxy.close();
                server.close();
            }
        }
    }

    /**
     * A source that cannot give a page (a chunk of its snapshot whose checksum fails): it tells the
     * destination with an ERROR, and the restore fails at once, naming it; it does not reconnect
     * for ever.
     */
    @Test
    void aSourceThatCannotReadAPageFailsTheRestoreNamingIt() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 73);
        Path snap = Fixtures.pack(raw, dir.resolve("snap"), Codec.LZ4);
        byte[] bytes = java.nio.file.Files.readAllBytes(snap);
        bytes[bytes.length / 2] ^= 0x5a; // inside a chunk's data: the manifest at the end stays whole
        java.nio.file.Files.write(snap, bytes);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        try (PageSource source = PageSources.open(snap, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(
                        new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add);
                RemoteSource remote = RemoteSource.connect(
                        "127.0.0.1", server.address().getPort(), RemoteSource.Options.defaults(), log::add)) {
            long t0 = System.nanoTime();
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> LazyRestore.run(
                            remote,
                            GuestMemory.Backend.MEMFD,
                            LazyRestore.Options.defaults(UffdMode.MISSING),
                            new LazyRestore.Checks(0, 1, 0, Duration.ofMinutes(1), Duration.ofMinutes(1))))
                    .hasMessageContaining("the source cannot give its pages")
                    .hasMessageContaining("checksum");
            assertThat((System.nanoTime() - t0) / 1e9)
                    .as("failed at once: %s", log)
                    .isLessThan(10);
            assertThat(remote.stats().reconnects()).as("no reconnecting for it").isZero();
        }
    }

    /** One byte flipped on the wire: the destination names the frame it refused and fails; no wrong page reaches the guest. */
    @Test
    void aCorruptByteOnTheWireFailsTheRestoreNamingIt() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 53);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(
                        new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add);
                dev.gmem.bench.FaultProxy proxy = new dev.gmem.bench.FaultProxy(
                        new InetSocketAddress("127.0.0.1", 0), server.address(), 0, 16L << 20);
                RemoteSource remote = RemoteSource.connect(
                        "127.0.0.1", proxy.address().getPort(), RemoteSource.Options.defaults(), log::add)) {
            proxy.corruptAfter(5L << 20); // well inside the pages, past the map
            org.assertj.core.api.Assertions.assertThatThrownBy(() -> LazyRestore.run(
                            remote,
                            GuestMemory.Backend.MEMFD,
                            LazyRestore.Options.defaults(UffdMode.MISSING),
                            new LazyRestore.Checks(2, 5, 0, Duration.ofMinutes(1), Duration.ofMinutes(1))))
                    .satisfies(e -> assertThat(e.getMessage())
                            .as("%s", log)
                            .containsAnyOf(
                                    "checksum fails", "a DATA frame", "unexpected frame", "past its limit", "cut short")
                            .doesNotContain("pages differ"));
        }
    }

    /**
     * Hostile destinations, each on a raw socket: a wrong magic, a wrong version, a frame past its
     * limit, a request for pages outside the map, for a zero page, and across a hole. Each gets an
     * ERROR naming its fault and is closed; the server logs it and serves a good destination after them.
     */
    @Test
    void hostileDestinationsAreRefusedByNameAndOthersServed() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 59);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        try (PageSource source = PageSources.open(raw, null, 2, x -> {}, PageSources.Format.AUTO);
                PageServer server = PageServer.start(
                        new InetSocketAddress("127.0.0.1", 0), source, PageServer.Options.defaults(), log::add)) {
            long zero = -1;
            for (long o = 0; o < source.size() && zero < 0; o += 4096) {
                var at = new dev.gmem.snapshot.PageIndex(source).atFileOffset(o);
                if (at != null && at.kind() == dev.gmem.snapshot.PageKind.ZERO) zero = o;
            }
            long zeroPage = zero;
            record Case(String name, Link.Writer write, String expect) {}
            List<Case> cases = List.of(
                    new Case(
                            "magic",
                            o -> {
                                Protocol.writeHeader(o, Protocol.HELLO, 23);
                                o.write("NOTGMEM".getBytes(java.nio.charset.StandardCharsets.US_ASCII), 0, 6);
                                o.write(new byte[17]);
                            },
                            "wrong magic"),
                    new Case(
                            "version",
                            o -> {
                                Protocol.writeHeader(o, Protocol.HELLO, 23);
                                o.write(Protocol.MAGIC);
                                o.writeShort(99);
                                o.write(new byte[15]);
                            },
                            "protocol version 99"),
                    new Case(
                            "length",
                            o -> Protocol.writeHeader(o, Protocol.HELLO, Integer.MAX_VALUE),
                            "past its limit"),
                    new Case(
                            "outside",
                            o -> {
                                Protocol.writeHello(o, Protocol.ROLE_CONTROL, 5, new long[0]);
                                request(o, source.size() + 4096, 1);
                            },
                            "outside the map"),
                    new Case(
                            "zero",
                            o -> {
                                Protocol.writeHello(o, Protocol.ROLE_CONTROL, 6, new long[0]);
                                request(o, zeroPage, 1);
                            },
                            "not one run of data pages"),
                    new Case(
                            "run",
                            o -> {
                                Protocol.writeHello(o, Protocol.ROLE_CONTROL, 7, new long[0]);
                                request(o, 0, 4096);
                            },
                            "not one run of data pages"));
            for (Case c : cases) {
                try (java.net.Socket s =
                        new java.net.Socket("127.0.0.1", server.address().getPort())) {
                    s.setSoTimeout(10_000);
                    java.io.DataOutputStream o = new java.io.DataOutputStream(s.getOutputStream());
                    c.write().write(o);
                    o.flush();
                    java.io.DataInputStream in = new java.io.DataInputStream(s.getInputStream());
                    String error = null;
                    while (error == null) { // past the map and pings, to the ERROR
                        Protocol.Header h = Protocol.readHeader(
                                in, Protocol.MAX_PAYLOAD, Protocol.MAP, Protocol.PING, Protocol.ERROR, Protocol.DATA);
                        if (h.type() == Protocol.ERROR) error = Protocol.readError(in, h.length());
                        else in.readNBytes(h.length());
                    }
                    assertThat(error).as(c.name()).contains(c.expect());
                    assertThat(in.read())
                            .as("%s: closed after the error", c.name())
                            .isEqualTo(-1);
                }
            }
            assertThat(log).anySatisfy(l -> assertThat(l).contains("wrong magic"));
            try (RemoteSource remote = RemoteSource.connect(
                    "127.0.0.1", server.address().getPort(), RemoteSource.Options.defaults(), log::add)) {
                LazyRestore.Outcome o = LazyRestore.run(
                        remote,
                        GuestMemory.Backend.MEMFD,
                        LazyRestore.Options.defaults(UffdMode.MISSING),
                        new LazyRestore.Checks(1, 9, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
                assertThat(o.verify().wrongPages()).isZero();
            }
        }
    }

    private static void request(java.io.DataOutputStream o, long offset, int pages) throws java.io.IOException {
        Protocol.writeHeader(o, Protocol.REQUEST, Protocol.REQUEST_LENGTH);
        o.writeLong(1);
        o.writeLong(offset);
        o.writeInt(pages);
        o.writeByte(Protocol.FOR_FAULT);
    }
}
