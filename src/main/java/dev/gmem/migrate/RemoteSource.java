package dev.gmem.migrate;

import dev.gmem.fault.PageProvider;
import dev.gmem.memory.PageBitmap;
import dev.gmem.restore.ProvidedSource;
import dev.gmem.restore.SourcePages;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.ChunkData;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.Region;
import java.io.EOFException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import javax.net.ssl.SSLContext;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;

/**
 * The memory of a VM served by {@code gmem serve} on another host, as a {@link ProvidedSource}: its
 * map is read on connecting (so zero pages and holes are resolved here, never asked for), a lazy
 * restore's faults are urgent requests on the control connection, and its background population is
 * the source's push on a second connection. Anything else that reads it (an eager restore, {@code
 * --verify}, the guest check) asks for whole chunks on the control connection.
 *
 * <p>Recovery: when either connection breaks or falls silent for {@code peerTimeout}, both are
 * closed and the link thread reconnects with backoff (50 ms doubling to 1 s) for up to {@code
 * reconnectTimeout}. Meanwhile faulting threads wait: nothing is zero-filled and no request is
 * dropped. A new push connection sends the pages already here, and the source pushes the rest;
 * requests not yet answered are sent again (a page that arrives twice is installed once). A source
 * that does not come back in time, or that breaks the protocol (a frame that fails its checksum, a
 * page outside the map, a map that differs from the first), fails every waiting request and the
 * push: the restore fails, naming the source. Threads: {@code gmem-pc-link}, and a reader per
 * connection ({@code gmem-pc-control}, {@code gmem-pc-push}).
 */
public final class RemoteSource implements ProvidedSource {
    /**
     * {@code reconnectTimeout}: how long a lost source is waited for; {@code peerTimeout}: silence
     * that counts as loss; {@code tls}: or null; {@code pushNice}: how much nicer than the process
     * the push reader runs (0 to 19, 10 by default: it yields a busy core to the fault path).
     */
    public record Options(Duration reconnectTimeout, Duration peerTimeout, SSLContext tls, int pushNice) {
        public Options {
            Protocol.requirePushNice(pushNice);
        }

        /** The push reader at {@link Protocol#PUSH_NICER}. */
        public Options(Duration reconnectTimeout, Duration peerTimeout, SSLContext tls) {
            this(reconnectTimeout, peerTimeout, tls, Protocol.PUSH_NICER);
        }

        public static Options defaults() {
            return new Options(Duration.ofSeconds(30), Duration.ofSeconds(3), null);
        }
    }

    /** This side's counters. */
    public record Stats(
            long requests,
            long requestedPages,
            long pushedPages,
            long duplicatePages,
            long receivedWireBytes,
            int reconnects,
            double downMs,
            boolean pushDone) {}

    private final String host;
    private final int port;
    private final Options options;
    private final Consumer<String> log;
    private final Protocol.SourceMap map;
    private final byte[] mapBytes;
    /** Pairs this destination's connections at the source, across reconnections. */
    private final long pair;

    private final long units;
    /** Data pages here already (delivered by a push or an answer), in units of {@link Protocol#UNIT}. */
    private final PageBitmap have;

    private final AtomicLong haveUnits = new AtomicLong();
    private final long dataUnits;
    private final SourcePages meta;
    private final Pages provider;

    private final Map<Long, Pending> pending = new ConcurrentHashMap<>();
    /** Faults' requests not yet answered: while there are any, the push reader holds back (see {@link #yieldToFaults}). */
    private final java.util.concurrent.atomic.AtomicInteger faultsWaiting =
            new java.util.concurrent.atomic.AtomicInteger();

    private final AtomicLong ids = new AtomicLong();

    private final Object state = new Object();
    /** Guarded by {@link #state}: the live connections, or null while down. */
    private Link control;

    private Link push;
    private long downSince = -1;
    private IOException lastLoss;
    private IOException fatal;
    private PageProvider.PushSink sink;
    private boolean pushDone;
    private boolean closed;
    private int reconnects;
    private long downNanos;

    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong requestedPages = new AtomicLong();
    private final AtomicLong pushedPages = new AtomicLong();
    private final AtomicLong duplicatePages = new AtomicLong();
    private final AtomicLong wireBytes = new AtomicLong();
    private final Thread linker;

    /**
     * A request not yet answered: its pages, and where they go; {@code installs}: into the guest
     * (a fault's), so that they count as here once delivered (a chunk read for a check does not).
     */
    private record Pending(long offset, int pages, long token, PageProvider.Delivery to, boolean installs) {}

    private RemoteSource(
            String host, int port, Options options, Consumer<String> log, long pair, Link control, byte[] mapBytes)
            throws IOException {
        this.pair = pair;
        this.host = host;
        this.port = port;
        this.options = options;
        this.log = log;
        this.control = control;
        this.mapBytes = mapBytes;
        this.map = Protocol.decodeMap(mapBytes);
        this.units = (map.size() + Protocol.UNIT - 1) / Protocol.UNIT;
        this.have = new PageBitmap(units);
        long dataU = 0;
        for (Chunk c : map.chunks()) {
            dataU += c.dataPages() * (map.regions().get(c.region()).pageSize() / Protocol.UNIT);
        }
        this.dataUnits = dataU;
        this.meta = new SourcePages(this);
        this.provider = new Pages();
        this.linker = Thread.ofPlatform().name("gmem-pc-link").daemon().unstarted(this::link);
    }

    /**
     * Connects to the source at {@code host}:{@code port} and reads its map.
     *
     * @throws IOException naming the source when it cannot be reached, refuses, or sends a bad map
     */
    public static RemoteSource connect(String host, int port, Options options, Consumer<String> log)
            throws IOException {
        long pair = new java.security.SecureRandom().nextLong() | 1;
        long deadline = System.nanoTime() + options.reconnectTimeout().toNanos();
        long backoff = 50;
        while (true) {
            try {
                return connectOnce(host, port, options, log, pair);
            } catch (IOException e) {
                // a connection broken on the way (a reset, a silent peer) is tried again, as a lost one would be;
                // nothing listening, a refusal, or a bad answer is final
                Throwable cause = e.getCause() == null ? e : e.getCause();
                boolean transientLoss = !(cause instanceof java.net.ConnectException
                        || cause instanceof javax.net.ssl.SSLException
                        || cause instanceof Protocol.ViolationException
                        || cause instanceof Protocol.RefusedException
                        || e instanceof Protocol.ViolationException
                        || e instanceof Protocol.RefusedException);
                if (!transientLoss || System.nanoTime() + backoff * 1_000_000 > deadline) throw e;
                log.accept(e.getMessage() + "; trying again");
                sleep(backoff);
                backoff = Math.min(1000, backoff * 2);
            }
        }
    }

    private static RemoteSource connectOnce(String host, int port, Options options, Consumer<String> log, long pair)
            throws IOException {
        Link control = open(host, port, options);
        RemoteSource r;
        try {
            control.send(o -> Protocol.writeHello(o, Protocol.ROLE_CONTROL, pair, new long[0]));
            byte[] m = readMapWithin(control, host, port, options);
            r = new RemoteSource(host, port, options, log, pair, control, m);
        } catch (javax.net.ssl.SSLException e) { // TLS 1.3 reports a refused client certificate on the first read
            control.close();
            throw new IOException("the gmem source at " + host + ":" + port + " refused TLS: " + e.getMessage(), e);
        } catch (IOException e) {
            control.close();
            if (e.getMessage() != null && e.getMessage().contains(host + ":" + port)) throw e;
            throw new IOException("the gmem source at " + host + ":" + port + ": " + e.getMessage(), e);
        } catch (RuntimeException e) {
            control.close();
            throw e;
        }
        r.startReader(control, false);
        r.linker.start();
        return r;
    }

    private static Link open(String host, int port, Options options) throws IOException {
        java.nio.channels.SocketChannel s = java.nio.channels.SocketChannel.open();
        try {
            s.socket().connect(new InetSocketAddress(host, port), (int)
                    options.peerTimeout().toMillis());
            TlsChannel tls = null;
            if (options.tls() != null) {
                javax.net.ssl.SSLEngine e = options.tls().createSSLEngine(host, port);
                e.setUseClientMode(true);
                e.setEnabledProtocols(new String[] {"TLSv1.3"});
                e.setEnabledCipherSuites(Tls.SUITES);
                javax.net.ssl.SSLParameters p = e.getSSLParameters();
                p.setEndpointIdentificationAlgorithm(
                        "HTTPS"); // the source's certificate must name the host connected to
                e.setSSLParameters(p);
                tls = TlsChannel.open(s, e, options.peerTimeout());
            }
            return new Link(s, tls);
        } catch (IOException e) {
            try {
                s.close();
            } catch (IOException ignored) {
                // the connection failed anyway
            }
            throw new IOException(
                    "cannot connect to the gmem source at " + host + ":" + port + ": "
                            + (e.getMessage() != null
                                    ? e.getMessage()
                                    : e.getClass().getSimpleName()),
                    e);
        }
    }

    /**
     * Reads the map on {@code link}, closing the link if the source stays silent past the peer
     * time-out (a channel's reads have none of their own).
     */
    private static byte[] readMapWithin(Link link, String host, int port, Options options) throws IOException {
        boolean[] done = {false};
        Thread watchdog = Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(options.peerTimeout());
            } catch (InterruptedException e) {
                return;
            }
            synchronized (done) {
                if (!done[0]) link.close();
            }
        });
        try {
            return readMap(link, host, port);
        } catch (IOException e) {
            if (link.closed())
                throw new IOException(
                        "the gmem source at " + host + ":" + port + " sent no map within "
                                + options.peerTimeout().toMillis() + " ms",
                        e);
            throw e;
        } finally {
            synchronized (done) {
                done[0] = true;
            }
            watchdog.interrupt();
        }
    }

    private static byte[] readMap(Link link, String host, int port) throws IOException {
        try {
            Protocol.Header h =
                    Protocol.readHeader(link.in, Protocol.MAX_PAYLOAD, Protocol.MAP, Protocol.ERROR, Protocol.PING);
            while (h.type() == Protocol.PING)
                h = Protocol.readHeader(link.in, Protocol.MAX_PAYLOAD, Protocol.MAP, Protocol.ERROR, Protocol.PING);
            if (h.type() == Protocol.ERROR)
                throw new Protocol.RefusedException("the gmem source at " + host + ":" + port + " refused: "
                        + Protocol.readError(link.in, h.length()));
            byte[] m = new byte[h.length()];
            link.in.readFully(m);
            return m;
        } catch (Protocol.ViolationException e) {
            throw new IOException("the gmem source at " + host + ":" + port + " sent " + e.getMessage(), e);
        } catch (EOFException e) {
            throw new IOException(
                    "the gmem source at " + host + ":" + port + " closed the connection before its map", e);
        }
    }

    // ---- PageSource ----

    /** None: the pages are on a peer. */
    @Override
    public Path path() {
        return null;
    }

    @Override
    public String name() {
        return "tcp://" + host + ":" + port;
    }

    @Override
    public String format() {
        return "remote " + map.format();
    }

    @Override
    public List<Region> regions() {
        return map.regions();
    }

    @Override
    public List<Chunk> chunks() {
        return map.chunks();
    }

    @Override
    public long[] accessOrder() {
        return map.accessOrder();
    }

    @Override
    public long scratchBytes() {
        long max = 0;
        for (Chunk c : map.chunks()) max = Math.max(max, c.rawLength());
        return Math.max(max, 4096);
    }

    /** A chunk's data pages, asked for on the control connection (every run of the chunk at once) and packed into {@code scratch}. */
    @Override
    public ChunkData read(int index, MemorySegment scratch) throws IOException {
        Chunk c = map.chunks().get(index);
        long page = map.regions().get(c.region()).pageSize();
        java.util.List<int[]> runs = new java.util.ArrayList<>();
        c.forEachDataRun((first, n) -> runs.add(new int[] {first, n}));
        fetchRuns(c, runs, scratch);
        return ChunkData.packed(c, scratch.asSlice(0, c.rawLength()), page);
    }

    /** Only the pages asked for: {@code pages} data pages of chunk {@code index} from window page {@code firstPage}. */
    @Override
    public MemorySegment readRun(int index, int firstPage, int pages, MemorySegment scratch) throws IOException {
        Chunk c = map.chunks().get(index);
        fetchRuns(c, java.util.List.of(new int[] {firstPage, pages}), scratch);
        return scratch.asSlice(0, pages * map.regions().get(c.region()).pageSize());
    }

    /** Asks for each run ({first page, pages} of chunk {@code c}) at once, and packs their pages into {@code scratch} in order. */
    private void fetchRuns(Chunk c, java.util.List<int[]> runs, MemorySegment scratch) throws IOException {
        Region r = map.regions().get(c.region());
        long page = r.pageSize();
        long total = 0;
        for (int[] run : runs) total += run[1] * page;
        CountDownLatch left = new CountDownLatch(runs.size());
        IOException[] failure = new IOException[1];
        // the answers arrive on the reader's thread, which may not touch the caller's scratch (it may be confined):
        // they
        // land in a heap array, which any thread may write, and which outlives a wait that was interrupted
        MemorySegment landed = MemorySegment.ofArray(new byte[Math.toIntExact(total)]);
        PageProvider.Delivery into = new PageProvider.Delivery() {
            @Override
            public void deliver(long token, long offset, MemorySegment bytes) {
                MemorySegment.copy(bytes, 0, landed, token, bytes.byteSize());
                left.countDown();
            }

            @Override
            public void failed(long token, long offset, IOException cause) {
                synchronized (failure) {
                    failure[0] = cause;
                }
                while (left.getCount() > 0) left.countDown();
            }
        };
        long packedAt = 0;
        for (int[] run : runs) {
            request(r.fileOffset() + (c.firstPage() + run[0]) * page, run[1], packedAt, into, false);
            packedAt += run[1] * page;
        }
        try {
            left.await();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("reading from " + describe() + " interrupted");
        }
        synchronized (failure) {
            if (failure[0] != null) throw failure[0];
        }
        MemorySegment.copy(landed, 0, scratch, 0, total);
    }

    /** Nothing to check here: each frame carries the CRC32C of its pages, checked on arrival; the source checks its own. */
    @Override
    public void verify(int threads, java.util.function.LongConsumer progress) {}

    @Override
    public PageProvider provider() {
        return provider;
    }

    public String describe() {
        return "the gmem source at " + host + ":" + port + " (" + map.describe() + ")";
    }

    public Stats stats() {
        synchronized (state) {
            long down = downNanos + (downSince > 0 ? System.nanoTime() - downSince : 0);
            return new Stats(
                    requests.get(),
                    requestedPages.get(),
                    pushedPages.get(),
                    duplicatePages.get(),
                    wireBytes.get(),
                    reconnects,
                    down / 1e6,
                    pushDone && haveUnits.get() >= dataUnits);
        }
    }

    // ---- requests ----

    /** Asks for {@code n} data pages from {@code offset}; {@code to} hears of them on a reader thread, or of the failure. */
    private void request(long offset, int n, long token, PageProvider.Delivery to, boolean installs)
            throws IOException {
        long id = ids.incrementAndGet();
        requests.incrementAndGet();
        requestedPages.addAndGet(n);
        Link link;
        synchronized (state) {
            if (fatal != null) throw fatal;
            if (closed) throw new IOException(describe() + ": closed");
            pending.put(id, new Pending(offset, n, token, to, installs));
            if (installs) faultsWaiting.incrementAndGet();
            link = control;
        }
        if (link != null) sendRequest(link, id, offset, n, installs); // else sent on reconnecting
    }

    private void sendRequest(Link link, long id, long offset, int n, boolean forFault) {
        try {
            link.send(o -> {
                Protocol.writeHeader(o, Protocol.REQUEST, Protocol.REQUEST_LENGTH);
                o.writeLong(id);
                o.writeLong(offset);
                o.writeInt(n);
                o.writeByte(forFault ? Protocol.FOR_FAULT : Protocol.FOR_READ);
            });
        } catch (IOException e) {
            lost(link, e); // the request stays pending, and is sent again once reconnected
        }
    }

    // ---- readers ----

    private void startReader(Link link, boolean isPush) {
        Thread.ofPlatform()
                .name(isPush ? "gmem-pc-push" : "gmem-pc-control")
                .daemon()
                .start(() -> read(link, isPush));
    }

    private void read(Link link, boolean isPush) {
        if (isPush) Protocol.lowerPushPriority(options.pushNice());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment raw = arena.allocate(Protocol.MAX_DATA, 4096);
            MemorySegment stored = arena.allocate(Protocol.MAX_DATA, 4096);
            while (true) {
                Protocol.Header h = Protocol.readHeader(
                        link.in,
                        Protocol.HEADER + Protocol.DATA_FIELDS + Protocol.MAX_DATA,
                        Protocol.DATA,
                        Protocol.PING,
                        Protocol.PUSH_DONE,
                        Protocol.ERROR);
                switch (h.type()) {
                    case Protocol.PING -> {}
                    case Protocol.ERROR ->
                        throw new Protocol.ViolationException("an error: " + Protocol.readError(link.in, h.length()));
                    case Protocol.PUSH_DONE -> {
                        if (!isPush)
                            throw new Protocol.ViolationException("a PUSH_DONE frame on the control connection");
                        pushEnded();
                    }
                    default -> data(link, h, isPush, raw, stored);
                }
            }
        } catch (Protocol.ViolationException e) {
            fail(new IOException(describe() + " sent " + e.getMessage(), e));
        } catch (InstallFailedException e) {
            fail(new IOException(describe() + ": " + e.getMessage(), e));
        } catch (IOException e) {
            lost(link, e);
        } catch (RuntimeException e) { // not the network's doing: retrying would repeat it
            fail(new IOException(describe() + ": delivering pages failed: " + e, e));
        }
    }

    private static final LZ4SafeDecompressor LZ4 = LZ4Factory.fastestInstance().safeDecompressor();

    /** Pushed pages could not be put in place: the restore fails, it is not a network loss. */
    private static final class InstallFailedException extends IOException {
        private static final long serialVersionUID = 1L;

        InstallFailedException(IOException cause) {
            super("putting pushed pages in place failed: " + cause.getMessage(), cause);
        }
    }

    /** One DATA frame: checked whole (its pages in the map, its length, its checksum) before any byte of it is used. */
    private void data(Link link, Protocol.Header h, boolean isPush, MemorySegment raw, MemorySegment stored)
            throws IOException {
        if (h.length() < Protocol.DATA_FIELDS) throw new Protocol.ViolationException("a DATA frame cut short");
        long id = link.in.readLong();
        long offset = link.in.readLong();
        int n = link.in.readInt();
        int codec = link.in.readUnsignedByte();
        int crc = link.in.readInt();
        int rawLength = link.in.readInt();
        int storedLength = h.length() - Protocol.DATA_FIELDS;
        if (storedLength > Protocol.MAX_DATA) throw new Protocol.ViolationException("a DATA frame past its limit");
        // an uncompressed frame's pages go straight where they are checked and installed from
        boolean plain = codec == Protocol.CODEC_NONE && storedLength == rawLength;
        link.readFully(plain ? raw.asSlice(0, storedLength) : stored.asSlice(0, storedLength));
        wireBytes.addAndGet(Protocol.HEADER + h.length());
        if (offset < 0 || offset >= map.size() || n < 1 || meta.kind(offset) != PageKind.DATA)
            throw new Protocol.ViolationException("pages outside the map (offset " + offset + ", " + n + " pages)");
        long page = meta.pageSize(offset);
        if (offset % page != 0
                || meta.dataRun(offset, n) < n
                || (long) n * page != rawLength
                || rawLength > Protocol.MAX_DATA)
            throw new Protocol.ViolationException("a DATA frame whose pages are not one run of data pages (offset "
                    + offset + ", " + n + " pages, " + rawLength + " bytes)");
        Pending p = null;
        if (isPush) {
            if (id != 0) throw new Protocol.ViolationException("an answer on the push connection");
        } else {
            p = pending.get(id);
            if (p == null) return; // answered before the connection broke, and again after it: delivered once
            if (p.offset() != offset || p.pages() != n)
                throw new Protocol.ViolationException("an answer to request " + id + " for other pages than asked");
        }
        MemorySegment bytes = raw.asSlice(0, rawLength);
        if (codec == Protocol.CODEC_NONE) {
            if (storedLength != rawLength) throw new Protocol.ViolationException("a DATA frame of the wrong length");
        } else if (codec == Protocol.CODEC_LZ4) {
            int got;
            try {
                got = LZ4.decompress(
                        stored.asSlice(0, storedLength).asByteBuffer(),
                        0,
                        storedLength,
                        bytes.asByteBuffer(),
                        0,
                        rawLength);
            } catch (net.jpountz.lz4.LZ4Exception e) {
                throw new Protocol.ViolationException("a DATA frame whose LZ4 data does not decode");
            }
            if (got != rawLength) throw new Protocol.ViolationException("a DATA frame whose LZ4 data decodes short");
        } else {
            throw new Protocol.ViolationException("a DATA frame of unknown codec " + codec);
        }
        if (Link.crc32c(bytes) != crc)
            throw new Protocol.ViolationException(
                    "pages whose checksum fails (offset " + offset + ", " + n + " pages)");
        long first = offset / Protocol.UNIT;
        // a push's pages are all put in place (or skipped as removed, or there already); of a fault's answer only
        // its first page is sure to be (the fault engine fills the pages around it as it can), so only that one counts
        // as here: the push brings the others, which the source does not count as sent either
        long end = first + (isPush ? rawLength : page) / Protocol.UNIT;
        if (isPush) {
            PageProvider.PushSink s;
            synchronized (state) {
                s = sink;
            }
            if (s == null) return;
            yieldToFaults();
            try {
                s.offer(offset, bytes);
            } catch (IOException e) { // the guest's side failed, not the network: retrying would repeat it
                throw new InstallFailedException(e);
            }
            pushedPages.addAndGet(n);
        } else {
            if (pending.remove(id) == null) return;
            try {
                p.to().deliver(p.token(), offset, bytes);
            } finally {
                if (p.installs()) faultsWaiting.decrementAndGet();
            }
            if (!p.installs()) return; // read for a check: not in the guest
        }
        long added = have.setRangeCounting(first, end); // atomic: a page two readers bring counts once
        if (added < end - first) duplicatePages.addAndGet((end - first - added) * Protocol.UNIT / page);
        if (haveUnits.addAndGet(added) >= dataUnits) maybeDone();
    }

    /**
     * The priority of faults over the push, on this side: while a fault's answer is awaited, the
     * push reader waits (up to {@link #YIELD_NANOS}) before it installs its next batch, leaving the
     * CPU, and the fault engine's lock, to the answer. On two cores this is what keeps a fault's
     * round trip short while the push runs at full speed.
     */
    private void yieldToFaults() {
        if (faultsWaiting.get() <= 0) return;
        long until = System.nanoTime() + YIELD_NANOS;
        while (faultsWaiting.get() > 0 && System.nanoTime() < until)
            java.util.concurrent.locks.LockSupport.parkNanos(10_000);
    }

    static final long YIELD_NANOS = 2_000_000;

    private void pushEnded() {
        synchronized (state) {
            pushDone = true;
        }
        maybeDone();
    }

    /** The push has ended and every data page is here: the population is complete. */
    private void maybeDone() {
        PageProvider.PushSink s;
        synchronized (state) {
            if (!pushDone || haveUnits.get() < dataUnits || sink == null) return;
            s = sink;
            sink = null;
        }
        s.done();
    }

    // ---- the link: heartbeats, loss, reconnection ----

    /** A connection broke or fell silent: both are closed, and the link thread reconnects. */
    private void lost(Link link, IOException cause) {
        synchronized (state) {
            if (closed || fatal != null || (link != control && link != push)) return; // stale, or already handled
            if (control != null) control.close();
            if (push != null) push.close();
            control = null;
            push = null;
            downSince = System.nanoTime();
            lastLoss = cause;
            state.notifyAll();
        }
        log.accept(describe() + ": connection lost (" + cause.getMessage() + "); reconnecting for up to "
                + options.reconnectTimeout().toSeconds() + " s");
    }

    /** The restore cannot go on: every waiting request and the push fail with {@code cause}. */
    private void fail(IOException cause) {
        PageProvider.PushSink s;
        synchronized (state) {
            if (fatal != null || closed) return;
            fatal = cause;
            if (control != null) control.close();
            if (push != null) push.close();
            control = null;
            push = null;
            s = sink;
            sink = null;
            state.notifyAll();
        }
        log.accept(cause.getMessage());
        for (Long id : pending.keySet()) {
            Pending p = pending.remove(id);
            if (p == null) continue;
            if (p.installs()) faultsWaiting.decrementAndGet();
            p.to().failed(p.token(), p.offset(), cause);
        }
        if (s != null) s.failed(cause);
    }

    private void link() {
        try {
            watchAndReconnect();
        } catch (RuntimeException e) { // never a silent end: nothing else would reconnect
            fail(new IOException(describe() + ": the link thread failed: " + e, e));
        }
    }

    private void watchAndReconnect() {
        long backoff = 50;
        while (true) {
            Link c, p;
            long since;
            synchronized (state) {
                if (closed || fatal != null) return;
                c = control;
                p = push;
                since = downSince;
            }
            if (c == null) {
                if (System.nanoTime() - since > options.reconnectTimeout().toNanos()) {
                    fail(new IOException(describe() + " did not come back within "
                            + options.reconnectTimeout().toSeconds() + " s (last: " + lastLossMessage() + ")"));
                    return;
                }
                try {
                    reconnect();
                    backoff = 50;
                    continue;
                } catch (Protocol.ViolationException e) {
                    fail(new IOException(describe() + " sent " + e.getMessage(), e));
                    return;
                } catch (IOException e) {
                    synchronized (state) {
                        lastLoss = e;
                    }
                    sleep(backoff);
                    backoff = Math.min(1000, backoff * 2);
                    continue;
                }
            }
            long now = System.nanoTime();
            for (Link l : new Link[] {c, p}) {
                if (l == null) continue;
                if (now - l.lastReceived() > options.peerTimeout().toNanos()) {
                    lost(
                            l,
                            new IOException(
                                    "silent for " + options.peerTimeout().toMillis() + " ms"));
                    break;
                }
                if (now - l.lastSent() > PageServer.HEARTBEAT.toNanos()) l.pingAsync(); // a full socket blocks only it
            }
            synchronized (state) {
                try {
                    state.wait(PageServer.HEARTBEAT.toMillis() / 2);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    private String lastLossMessage() {
        synchronized (state) {
            return lastLoss == null ? "no answer" : lastLoss.getMessage();
        }
    }

    private static void sleep(long millis) {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Both connections again: the same map, then the pending requests sent again, then the push from what is here. */
    private void reconnect() throws IOException {
        Link c = open(host, port, options);
        boolean needPush;
        try {
            c.send(o -> Protocol.writeHello(o, Protocol.ROLE_CONTROL, pair, new long[0]));
            byte[] m = readMapWithin(c, host, port, options);
            if (!java.util.Arrays.equals(m, mapBytes))
                throw new Protocol.ViolationException(
                        "a map that differs from the one it sent first: it serves other memory now");
            synchronized (state) {
                if (closed || fatal != null) throw new IOException(describe() + ": closed");
                control = c;
                reconnects++;
                downNanos += System.nanoTime() - downSince;
                downSince = -1;
                needPush = sink != null; // decided under the lock that startPush takes: one of the two opens it
            }
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
        log.accept(describe() + ": reconnected; " + pending.size() + " requests sent again, "
                + (haveUnits.get() * 100 / Math.max(1, dataUnits)) + "% of the data here");
        startReader(c, false);
        for (Map.Entry<Long, Pending> e : pending.entrySet())
            sendRequest(
                    c,
                    e.getKey(),
                    e.getValue().offset(),
                    e.getValue().pages(),
                    e.getValue().installs());
        if (needPush) openPush(c);
    }

    /** The restore's population starts: the push is opened now, or by the reconnection if the source is down. */
    private void startPush(PageProvider.PushSink s) throws IOException {
        Link c;
        synchronized (state) {
            if (fatal != null) throw fatal;
            if (closed) throw new IOException(describe() + ": closed");
            sink = s;
            c = control;
        }
        if (c != null) openPush(c);
    }

    /** Opens the push beside control link {@code c}, with what is here; kept only if {@code c} is still the link and none is open. */
    private void openPush(Link c) {
        Link p;
        try {
            p = open(host, port, options);
            p.send(o -> Protocol.writeHello(o, Protocol.ROLE_PUSH, pair, have.toWords()));
        } catch (IOException e) {
            lost(c, e);
            return;
        }
        synchronized (state) {
            if (control != c || push != null || sink == null || closed || fatal != null) {
                p.close(); // lost meanwhile (the reconnection opens its own), or opened already, or no longer wanted
                return;
            }
            push = p;
        }
        startReader(p, true);
    }

    @Override
    public void close() {
        PageProvider.PushSink s;
        synchronized (state) {
            if (closed) return;
            closed = true;
            if (control != null) control.close();
            if (push != null) push.close();
            s = sink;
            sink = null;
            state.notifyAll();
        }
        IOException gone = new IOException(describe() + ": closed");
        for (Long id : pending.keySet()) {
            Pending p = pending.remove(id);
            if (p == null) continue;
            if (p.installs()) faultsWaiting.decrementAndGet();
            p.to().failed(p.token(), p.offset(), gone);
        }
        if (s != null) s.failed(gone);
        try {
            linker.join(5000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        meta.close();
    }

    /** The provider of a lazy restore: metadata from the map, faults as urgent requests, the population as the push. */
    private final class Pages implements PageProvider {
        @Override
        public long size() {
            return map.size();
        }

        @Override
        public long pageSize(long offset) {
            return meta.pageSize(offset);
        }

        @Override
        public PageKind kind(long offset) {
            return meta.kind(offset);
        }

        @Override
        public int dataRun(long offset, int maxPages) {
            return meta.dataRun(offset, Math.min(maxPages, (int) (Protocol.MAX_DATA / meta.pageSize(offset))));
        }

        @Override
        public long nextData(long offset) {
            return meta.nextData(offset);
        }

        @Override
        public long[] accessOrder() {
            return meta.accessOrder();
        }

        @Override
        public Fetcher fetcher() {
            return new Fetcher() {
                @Override
                public void fetch(long offset, int pages, long token, Delivery to) throws IOException {
                    request(offset, pages, token, to, true);
                }

                @Override
                public void close() {}
            };
        }

        @Override
        public boolean push(PushSink s) {
            try {
                startPush(s);
            } catch (IOException e) {
                s.failed(e);
            }
            return true;
        }

        @Override
        public String describe() {
            return RemoteSource.this.describe();
        }

        /** Stops the push for this restore (the source stays open for whatever else reads it). */
        @Override
        public void close() {
            Link p;
            synchronized (state) {
                sink = null;
                p = push;
                push = null;
            }
            if (p != null) p.close();
        }
    }
}
