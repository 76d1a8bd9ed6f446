package dev.gmem.migrate;

import dev.gmem.fault.PageProvider;
import dev.gmem.memory.PageBitmap;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import javax.net.ssl.SSLContext;
import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Factory;

/**
 * {@code gmem serve}: one VM's memory (a gmem snapshot, or the raw memory file of a paused VM,
 * read in place) served to post-copy destinations over {@link Protocol}. Each destination gets the
 * map, then its urgent requests answered on its control connection while its push connection
 * streams every data page it lacks: the access order first, then by address, continuing after each
 * page a fault asked for. Several destinations are served at once, each independently. Threads:
 * {@code gmem-serve-accept}; per connection {@code gmem-serve-N} (its reader) and, for a push
 * connection, {@code gmem-serve-N-push}; {@code gmem-serve-heartbeat} pings idle links. A
 * connection that breaks the protocol is answered with an ERROR naming the fault and closed; the
 * others go on. Does not own the source.
 */
public final class PageServer implements AutoCloseable {
    /**
     * {@code peerTimeout}: a connection silent this long is closed (the destination pings every
     * {@link #HEARTBEAT}); {@code lz4}: compress pushed batches with LZ4 where that saves at least
     * an eighth; {@code tls}: TLS 1.3 with client certificates, or null for plain TCP;
     * {@code pushSendBuffer}: the push connection's socket send buffer in bytes (SO_SNDBUF), 0 for
     * the kernel's own sizing, or {@link #PUSH_SEND_BUFFER_AUTO}; {@code pushNice}: how much nicer
     * than the process the pushing threads run (0 to 19, 10 by default).
     *
     * <p>On loopback a bounded send buffer bounds the pushed bytes queued in the kernel's path ahead
     * of a fault's answer: with the kernel's sizing (up to 4 MiB) the p99 of a fault's round trip
     * under the push was 166-200 us, and with 1 MiB 69-74 us, at the same push rate. Over a real
     * network device the kernel bounds a socket's queued bytes itself (TCP small queues), and a set
     * SO_SNDBUF would only cap the push: it turns the kernel's sizing off, and the kernel caps it
     * at {@code net.core.wmem_max} (208 KiB on a stock kernel), while a push needs about its
     * bandwidth times the round trip. So by default ({@code AUTO}) a destination on this host gets
     * {@link #LOOPBACK_PUSH_SEND_BUFFER} and any other the kernel's sizing.
     */
    public record Options(Duration peerTimeout, boolean lz4, SSLContext tls, int pushSendBuffer, int pushNice) {
        /** The push's send buffer: 1 MiB for a destination on loopback, the kernel's sizing for any other. */
        public static final int PUSH_SEND_BUFFER_AUTO = -1;

        /** What {@link #PUSH_SEND_BUFFER_AUTO} gives a destination on loopback. */
        public static final int LOOPBACK_PUSH_SEND_BUFFER = 1 << 20;

        public Options {
            if (pushSendBuffer < PUSH_SEND_BUFFER_AUTO)
                throw new IllegalArgumentException(
                        "the push's send buffer must be AUTO, 0 (the kernel's sizing) or a number of bytes");
            Protocol.requirePushNice(pushNice);
        }

        public Options(Duration peerTimeout, boolean lz4, SSLContext tls) {
            this(peerTimeout, lz4, tls, PUSH_SEND_BUFFER_AUTO, Protocol.PUSH_NICER);
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(5), false, null);
        }

        /** The send buffer a push connection to {@code peer} gets: 0 for the kernel's sizing. */
        int pushSendBufferFor(java.net.InetAddress peer) {
            if (pushSendBuffer != PUSH_SEND_BUFFER_AUTO) return pushSendBuffer;
            return peer != null && peer.isLoopbackAddress() ? LOOPBACK_PUSH_SEND_BUFFER : 0;
        }
    }

    /** Destinations whose counters are kept; older ones are dropped. */
    static final int MAX_DESTINATIONS = 1024;

    /** Connections served at once; more are refused with an ERROR. */
    static final int MAX_CONNECTIONS = 256;

    /** How often an idle link is pinged. */
    static final Duration HEARTBEAT = Duration.ofMillis(250);

    /** The most bytes one pushed batch carries. */
    static final int PUSH_BATCH = 256 << 10;

    /** One destination's counters on this side. */
    public record DestinationStats(
            long pair,
            String peer,
            int controlConnections,
            int pushConnections,
            long pushedPages,
            long pushedWireBytes,
            long requests,
            long requestedPages,
            long zeroPages,
            boolean pushDone,
            double pushDoneMs) {}

    private final java.nio.channels.ServerSocketChannel listener;
    private final PageSource source;
    private final SourcePages pages;
    private final PageIndex index;
    private final Options options;
    private final Consumer<String> log;
    private final byte[] map;
    private final long units;
    /** Every unit that is not a data page's: set. A push's bitmap of pages sent starts from it. */
    private final long[] notData;

    private final long zeroPages;
    /** A raw memory file: its pages are read with pread, never through its mapping. */
    private final boolean raw;

    private final Map<Long, Destination> destinations = new LinkedHashMap<>();
    private final List<Link> links = new ArrayList<>();
    private final AtomicLong connections = new AtomicLong();
    private final Thread acceptor;
    private final Thread heartbeat;
    private volatile boolean stopping;

    private PageServer(
            java.nio.channels.ServerSocketChannel listener, PageSource source, Options options, Consumer<String> log)
            throws IOException {
        this.listener = listener;
        this.source = source;
        this.pages = new SourcePages(source).verifyAhead();
        this.index = new PageIndex(source);
        this.options = options;
        this.log = log;
        this.units = (source.size() + Protocol.UNIT - 1) / Protocol.UNIT;
        PageBitmap other = new PageBitmap(units);
        other.setRange(0, units);
        for (Chunk c : source.chunks()) {
            Region r = source.regions().get(c.region());
            c.forEachDataRun((first, n) -> {
                long from = r.fileOffset() + (c.firstPage() + first) * r.pageSize();
                other.clearRange(from / Protocol.UNIT, (from + n * r.pageSize()) / Protocol.UNIT);
            });
        }
        this.notData = other.toWords();
        this.zeroPages = source.counts().zeroPages();
        this.raw = source.format().equals("raw");
        this.map = Protocol.encodeMap(new Protocol.SourceMap(
                source.format(), source.name(), source.regions(), source.chunks(), source.accessOrder()));
        this.acceptor = Thread.ofPlatform().name("gmem-serve-accept").daemon().unstarted(this::accept);
        this.heartbeat =
                Thread.ofPlatform().name("gmem-serve-heartbeat").daemon().unstarted(this::beat);
    }

    /**
     * Listens on {@code address} (port 0: any free one) and serves {@code source}.
     *
     * @throws IOException naming the address when it cannot be bound
     */
    public static PageServer start(InetSocketAddress address, PageSource source, Options options, Consumer<String> log)
            throws IOException {
        java.nio.channels.ServerSocketChannel s = java.nio.channels.ServerSocketChannel.open();
        try {
            s.socket().setReuseAddress(true);
            s.bind(address, 64);
        } catch (IOException e) {
            s.close();
            throw new IOException(
                    "cannot listen on " + address.getHostString() + ":" + address.getPort() + ": " + e.getMessage(), e);
        }
        PageServer server;
        try {
            server = new PageServer(s, source, options, log);
        } catch (IOException | RuntimeException e) {
            s.close();
            throw e;
        }
        server.acceptor.start();
        server.heartbeat.start();
        return server;
    }

    public InetSocketAddress address() {
        return (InetSocketAddress) listener.socket().getLocalSocketAddress();
    }

    /** Each destination served so far, in the order it came. */
    public List<DestinationStats> stats() {
        synchronized (destinations) {
            List<DestinationStats> out = new ArrayList<>();
            for (Destination d : destinations.values()) out.add(d.stats());
            return out;
        }
    }

    private void accept() {
        while (!stopping) {
            java.nio.channels.SocketChannel s;
            try {
                s = listener.accept();
            } catch (IOException e) {
                if (stopping) return;
                log.accept("accepting a connection failed: " + e.getMessage());
                try {
                    Thread.sleep(50); // out of descriptors, say: not a tight loop
                } catch (InterruptedException x) {
                    return;
                }
                continue;
            }
            int open;
            synchronized (links) {
                open = links.size();
            }
            if (open >= MAX_CONNECTIONS) {
                log.accept(
                        s.socket().getRemoteSocketAddress() + ": refused: " + MAX_CONNECTIONS + " connections already");
                closeQuietly(s);
                continue;
            }
            long n = connections.incrementAndGet();
            Thread.ofPlatform().name("gmem-serve-" + n).daemon().start(() -> serve(s));
        }
    }

    private void serve(java.nio.channels.SocketChannel s) {
        String peer = String.valueOf(s.socket().getRemoteSocketAddress()).replaceFirst("^/", "");
        Link link;
        try {
            TlsChannel tls = null;
            if (options.tls() != null) {
                javax.net.ssl.SSLEngine e = options.tls().createSSLEngine();
                e.setUseClientMode(false);
                e.setNeedClientAuth(true);
                e.setEnabledProtocols(new String[] {"TLSv1.3"});
                e.setEnabledCipherSuites(Tls.SUITES);
                javax.net.ssl.SSLParameters p = e.getSSLParameters();
                p.setUseCipherSuitesOrder(true); // the source's order: AES-128 first, the cheapest with AES-NI
                p.setNeedClientAuth(true);
                e.setSSLParameters(p);
                tls = TlsChannel.open(s, e, options.peerTimeout());
            }
            link = new Link(s, tls);
        } catch (IOException e) {
            log.accept(peer + ": " + (e instanceof javax.net.ssl.SSLException ? "TLS handshake failed: " : "")
                    + e.getMessage() + "; connection closed");
            closeQuietly(s);
            return;
        }
        synchronized (links) {
            links.add(link);
        }
        Destination d = null;
        try {
            Protocol.Hello hello = Protocol.readHello(link.in, units);
            d = destination(hello.pair(), peer);
            if (hello.role() == Protocol.ROLE_CONTROL) {
                d.attachControl(link);
                link.send(o -> {
                    Protocol.writeHeader(o, Protocol.MAP, map.length);
                    o.write(map);
                });
                control(d, link);
            } else {
                boundPushSendBuffer(link, peer);
                Pusher p = d.attachPush(link, hello.have());
                Thread.ofPlatform()
                        .name(Thread.currentThread().getName() + "-push")
                        .daemon()
                        .start(p);
                try {
                    drainPings(link); // until the destination goes: its silence, or its close
                } finally {
                    d.detachPush(link); // its bitmap goes with it
                }
            }
        } catch (Protocol.ViolationException | SourceReadException e) {
            log.accept(peer + ": " + e.getMessage() + "; connection closed");
            try {
                link.send(o -> Protocol.writeError(o, e.getMessage()));
                link.closeAfterLastMessage();
            } catch (IOException ignored) {
                // closing anyway
            }
        } catch (EOFException e) {
            // the destination closed the connection
        } catch (IOException | RuntimeException e) { // a silent destination's link was closed by the heartbeat
            if (!stopping && !link.closed()) log.accept(peer + ": " + e.getMessage() + "; connection closed");
        } finally {
            link.close();
            synchronized (links) {
                links.remove(link);
            }
        }
    }

    /** Sets the push connection's send buffer as the options say; one that the kernel capped lower is logged. */
    private void boundPushSendBuffer(Link link, String peer) throws IOException {
        int asked = options.pushSendBufferFor(link.socket.getInetAddress());
        if (asked <= 0) return;
        link.socket.setSendBufferSize(asked);
        // what the kernel granted, at most net.core.wmem_max (it keeps twice that, the half for its bookkeeping, and
        // the
        // JDK reports the half)
        int got = link.socket.getSendBufferSize();
        if (got < asked)
            log.accept(peer + ": the push's send buffer is " + got + " bytes, not " + asked
                    + ": the kernel caps it at net.core.wmem_max");
    }

    private Destination destination(long pair, String peer) {
        synchronized (destinations) {
            Destination d = destinations.get(pair);
            if (d == null) {
                d = new Destination(pair, peer);
                destinations.put(pair, d);
                // a daemon serves for days: the oldest destinations' counters go (each a few longs; bitmaps go with
                // pushes)
                java.util.Iterator<Long> oldest = destinations.keySet().iterator();
                while (destinations.size() > MAX_DESTINATIONS) {
                    oldest.next();
                    oldest.remove();
                }
                log.accept(peer + ": a new destination (" + Long.toHexString(pair) + ")");
            }
            return d;
        }
    }

    /** A destination's urgent requests, answered at once on its control connection. */
    private void control(Destination d, Link link) throws IOException {
        try (Arena arena = Arena.ofConfined();
                PageProvider.Fetcher fetcher = pages.fetcher()) {
            Answer answer = new Answer(link, arena);
            while (!stopping) {
                Protocol.Header h =
                        Protocol.readHeader(link.in, Protocol.REQUEST_LENGTH, Protocol.REQUEST, Protocol.PING);
                if (h.type() == Protocol.PING) continue;
                if (h.length() != Protocol.REQUEST_LENGTH)
                    throw new Protocol.ViolationException("a REQUEST frame of " + h.length() + " bytes");
                long id = link.in.readLong();
                long offset = link.in.readLong();
                int n = link.in.readInt();
                int kind = link.in.readUnsignedByte();
                if (kind != Protocol.FOR_FAULT && kind != Protocol.FOR_READ)
                    throw new Protocol.ViolationException("a REQUEST of unknown kind " + kind);
                long page = checkRun(offset, n, "a REQUEST");
                d.urgent.incrementAndGet(); // the push holds back until this is answered
                try {
                    d.requests.incrementAndGet();
                    d.requestedPages.addAndGet(n);
                    if (kind == Protocol.FOR_FAULT) d.requested(offset, n, page);
                    answer.send(fetcher, id, offset, n);
                } finally {
                    d.urgent.decrementAndGet();
                }
            }
        }
    }

    /**
     * Checks that {@code n} pages from {@code offset} are data pages of one run the source can
     * deliver at once; returns the page size.
     */
    private long checkRun(long offset, int n, String what) throws Protocol.ViolationException {
        if (offset < 0 || offset >= source.size() || n < 1)
            throw new Protocol.ViolationException(
                    what + " for pages outside the map (offset " + offset + ", " + n + " pages)");
        PageIndex.Location at = index.atFileOffset(offset);
        long page = at == null ? 0 : at.region().pageSize();
        if (at == null
                || offset % page != 0
                || at.kind() != PageKind.DATA
                || n * page > Protocol.MAX_DATA
                || pages.dataRun(offset, n) < n)
            throw new Protocol.ViolationException(
                    what + " for pages that are not one run of data pages (offset " + offset + ", " + n + " pages)");
        return page;
    }

    /**
     * Sends what a fetch delivers as a DATA frame, compressed if asked and worth it. The bytes are
     * copied into this thread's own buffer first: a source's pages may be its file's mapping, which
     * only a Java copy may read (a file truncated meanwhile then fails it; native code would crash).
     */
    private final class Answer implements PageProvider.Delivery {
        private final Link link;
        private final MemorySegment own;
        private final MemorySegment packed;
        IOException error;
        long wireBytes;

        Answer(Link link, Arena arena) {
            this.link = link;
            this.own = arena.allocate(Protocol.MAX_DATA, 4096);
            this.packed = options.lz4() ? arena.allocate(LZ4.maxCompressedLength(PUSH_BATCH), 64) : null;
        }

        /**
         * Reads and sends {@code n} data pages from {@code offset}: a raw file's with pread straight
         * into this thread's buffer (no mapping to fault in, no copy), a snapshot's through the
         * provider (its chunks checked and decoded once, for every destination).
         */
        void send(PageProvider.Fetcher fetcher, long token, long offset, int n) throws IOException {
            error = null;
            if (raw) {
                PageIndex.Location at = index.atFileOffset(offset);
                MemorySegment got;
                try {
                    got = source.readRun(at.index(), at.page(), n, own);
                } catch (IOException e) {
                    throw new SourceReadException(offset, e);
                }
                sendOwn(token, offset, got);
            } else {
                try {
                    fetcher.fetch(offset, n, token, this);
                } catch (IOException e) {
                    throw new SourceReadException(offset, e);
                }
            }
            if (error != null) throw error;
        }

        @Override
        public void deliver(long token, long offset, MemorySegment fetched) {
            error = null;
            MemorySegment bytes = own.asSlice(0, fetched.byteSize());
            try {
                try {
                    MemorySegment.copy(fetched, 0, bytes, 0, fetched.byteSize());
                } catch (InternalError e) {
                    source.checkUnchanged();
                    throw new IOException(source.name() + ": cannot be read: " + e.getMessage(), e);
                }
            } catch (IOException e) {
                error = new SourceReadException(offset, e);
                return;
            }
            sendOwn(token, offset, bytes);
        }

        /** Sends {@code bytes}, this thread's own, as a DATA frame. */
        private void sendOwn(long token, long offset, MemorySegment bytes) {
            try {
                int raw = (int) bytes.byteSize();
                int crc = Link.crc32c(bytes);
                long pageSize = index.atFileOffset(offset).region().pageSize();
                int n = (int) (raw / pageSize);
                if (token == 0 && packed != null && raw <= PUSH_BATCH) {
                    int max = (int) packed.byteSize();
                    int stored = LZ4.compress(bytes.asByteBuffer(), 0, raw, packed.asByteBuffer(), 0, max);
                    if (stored <= raw - raw / 8) {
                        link.sendData(token, offset, n, Protocol.CODEC_LZ4, crc, raw, packed.asSlice(0, stored));
                        wireBytes = Protocol.HEADER + Protocol.DATA_FIELDS + stored;
                        return;
                    }
                }
                link.sendData(token, offset, n, Protocol.CODEC_NONE, crc, raw, bytes);
                wireBytes = Protocol.HEADER + Protocol.DATA_FIELDS + raw;
            } catch (IOException e) {
                error = e;
            }
        }

        @Override
        public void failed(long token, long offset, IOException cause) {
            error = new SourceReadException(offset, cause); // a chunk whose checksum fails, say
        }
    }

    private static final LZ4Compressor LZ4 = LZ4Factory.fastestInstance().fastCompressor();

    /**
     * The source itself could not give pages (a chunk whose checksum fails, a file truncated
     * meanwhile): the destination is told with an ERROR, and fails; reconnecting would not help.
     */
    static final class SourceReadException extends IOException {
        private static final long serialVersionUID = 1L;

        SourceReadException(long offset, IOException cause) {
            super("the source cannot give its pages at offset " + offset + ": " + cause.getMessage(), cause);
        }
    }

    /** Reads a push connection's PINGs until the destination goes. */
    private void drainPings(Link link) throws IOException {
        while (!stopping && !link.closed()) Protocol.readHeader(link.in, 0, Protocol.PING);
    }

    /** One destination, across its connections and reconnections. */
    private final class Destination {
        final long pair;
        final String peer;
        final long startNanos = System.nanoTime();
        int controls;
        int pushes;
        Link push;
        Pusher pusher;
        final AtomicLong requests = new AtomicLong();
        /** Requests being answered now: the push waits for them (faults first, on this side too). */
        final java.util.concurrent.atomic.AtomicInteger urgent = new java.util.concurrent.atomic.AtomicInteger();

        final AtomicLong requestedPages = new AtomicLong();
        final AtomicLong pushedPages = new AtomicLong();
        final AtomicLong pushedWire = new AtomicLong();
        volatile long doneNanos = -1;

        Destination(long pair, String peer) {
            this.pair = pair;
            this.peer = peer;
        }

        synchronized void attachControl(Link link) {
            controls++;
        }

        /** A new push connection replaces the last: the old one is closed, which stops its pusher. */
        synchronized Pusher attachPush(Link link, long[] have) {
            pushes++;
            if (push != null) push.close();
            push = link;
            pusher = new Pusher(this, link, have);
            return pusher;
        }

        /** A fault's request: the push skips its first page and goes on after it. */
        synchronized void detachPush(Link link) {
            if (push == link) {
                push = null;
                pusher = null;
            }
        }

        void requested(long offset, int n, long page) {
            Pusher p;
            synchronized (this) {
                p = pusher;
            }
            if (p != null) p.requested(offset, n * page, page);
        }

        synchronized DestinationStats stats() {
            return new DestinationStats(
                    pair,
                    peer,
                    controls,
                    pushes,
                    pushedPages.get(),
                    pushedWire.get(),
                    requests.get(),
                    requestedPages.get(),
                    zeroPages,
                    doneNanos > 0,
                    doneNanos > 0 ? (doneNanos - startNanos) / 1e6 : -1);
        }
    }

    /**
     * The push to one destination over one connection: every data page not in the destination's
     * HELLO bitmap and not yet sent, the access order first, then by address from where the last
     * urgent request ended, wrapping round once the end is reached, until none is left.
     */
    private final class Pusher implements Runnable {
        private final Destination d;
        private final Link link;
        private final PageBitmap sent = new PageBitmap(units);
        private final AtomicLong jump = new AtomicLong(-1);

        Pusher(Destination d, Link link, long[] have) {
            this.d = d;
            this.link = link;
            sent.setAll(notData);
            sent.setAll(have);
        }

        /**
         * A fault's request for {@code length} bytes from {@code offset}: its first page (of {@code page}
         * bytes) is sent on the control connection and skipped here; the pages around it are best-effort
         * at the destination, so the push still sends them, in its turn. The push goes on after the run.
         */
        void requested(long offset, long length, long page) {
            sent.setRange(offset / Protocol.UNIT, (offset + page) / Protocol.UNIT);
            jump.set(offset + length);
        }

        @Override
        public void run() {
            Protocol.lowerPushPriority(options.pushNice());
            try (Arena arena = Arena.ofConfined();
                    PageProvider.Fetcher fetcher = pages.fetcher()) {
                Answer out = new Answer(link, arena);
                for (long gpa : source.accessOrder()) {
                    if (stopping || link.closed()) return;
                    long offset = index.fileOffsetOfGuest(gpa);
                    if (offset < 0 || pages.kind(offset) != PageKind.DATA) continue;
                    long page = pages.pageSize(offset);
                    offset -= offset % page;
                    send(fetcher, out, offset, 1, page);
                }
                long cursor = 0;
                while (!stopping && !link.closed()) {
                    long j = jump.getAndSet(-1);
                    if (j >= 0 && j < source.size()) cursor = j;
                    long u = sent.nextClear(cursor / Protocol.UNIT, units);
                    if (u == units) u = sent.nextClear(0, units);
                    if (u == units) break; // every data page sent
                    long offset = u * Protocol.UNIT;
                    long page = pages.pageSize(offset);
                    offset -= offset % page;
                    int n = pages.dataRun(offset, (int) Math.max(1, PUSH_BATCH / page));
                    cursor = offset + send(fetcher, out, offset, n, page) * page;
                }
                if (stopping || link.closed()) return;
                link.send(o -> Protocol.writeHeader(o, Protocol.PUSH_DONE, 0));
                if (d.doneNanos < 0) {
                    d.doneNanos = System.nanoTime();
                    log.accept(d.peer + ": every data page pushed (" + d.pushedPages.get() + " pushed, "
                            + d.requestedPages.get() + " asked for)");
                }
            } catch (SourceReadException e) {
                log.accept(d.peer + ": the push stopped: " + e.getMessage());
                try {
                    link.send(o -> Protocol.writeError(o, e.getMessage()));
                } catch (IOException ignored) {
                    // closing anyway
                }
                link.close();
            } catch (IOException | RuntimeException e) {
                if (!stopping && !link.closed()) log.accept(d.peer + ": the push stopped: " + e.getMessage());
                link.close();
            }
        }

        /** Claims and sends the unsent pages of the run at {@code offset} (at most {@code n}); returns the pages it covered. */
        private long send(PageProvider.Fetcher fetcher, Answer out, long offset, int n, long page) throws IOException {
            if (d.urgent.get() > 0) { // a fault's answer is being sent: leave it the CPU (bounded)
                long until = System.nanoTime() + 2_000_000;
                while (d.urgent.get() > 0 && System.nanoTime() < until)
                    java.util.concurrent.locks.LockSupport.parkNanos(10_000);
            }
            long first = offset / Protocol.UNIT;
            long end = sent.claim(first, first + n * page / Protocol.UNIT);
            long claimed = (end - first) * Protocol.UNIT / page;
            if (claimed == 0) { // sent meanwhile (a request), or had in part (a huge page): go past it for good
                sent.setRange(first, first + page / Protocol.UNIT);
                return 1;
            }
            out.send(fetcher, 0, offset, (int) claimed);
            d.pushedPages.addAndGet(claimed);
            d.pushedWire.addAndGet(out.wireBytes);
            return claimed;
        }
    }

    private void beat() {
        while (!stopping) {
            try {
                Thread.sleep(HEARTBEAT.toMillis());
            } catch (InterruptedException e) {
                return;
            }
            List<Link> now;
            synchronized (links) {
                now = new ArrayList<>(links);
            }
            long idle = System.nanoTime() - 2 * HEARTBEAT.toNanos();
            long silent = System.nanoTime() - options.peerTimeout().toNanos();
            for (Link l : now) {
                if (l.lastReceived() < silent) { // a channel's read has no time-out of its own
                    log.accept(
                            l.peer() + ": silent for " + options.peerTimeout().toMillis() + " ms; connection closed");
                    l.close();
                    continue;
                }
                if (l.lastSent() > idle) continue;
                l.pingAsync(); // a destination that stopped reading blocks its ping alone
            }
        }
    }

    private static void closeQuietly(java.nio.channels.SocketChannel s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closed is closed
        }
    }

    /** Stops accepting, closes every connection, and frees the server's buffers. Does not close the source. */
    @Override
    public void close() {
        stopping = true;
        try {
            listener.close();
        } catch (IOException ignored) {
            // closed is closed
        }
        List<Link> now;
        synchronized (links) {
            now = new ArrayList<>(links);
        }
        for (Link l : now) l.close();
        heartbeat.interrupt();
        try {
            acceptor.join(5000);
            heartbeat.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pages.close();
    }
}
