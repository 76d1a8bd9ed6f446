package dev.gmem.migrate;

import java.io.EOFException;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ByteChannel;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.concurrent.locks.ReentrantLock;
import javax.net.ssl.SSLEngine;
import javax.net.ssl.SSLEngineResult;
import javax.net.ssl.SSLException;

/**
 * TLS over a blocking {@link SocketChannel} through an {@link SSLEngine}, as a channel: pages are
 * encrypted straight from native memory and decrypted straight into it, where a TLS socket's
 * streams would copy them into and out of arrays on each side. The engine's own buffers (the
 * records on the wire) are heap arrays: the JDK's AES-GCM runs fastest on those, and with direct
 * ones this side's push measured 0.79 GiB/s against 1.16. {@link #read} is for one thread; {@link #write}s
 * are serialised by a lock of their own (a read that must answer the peer, a key update, takes it
 * too). The handshake runs in {@link #open}, bounded by a time-out.
 */
final class TlsChannel implements ByteChannel, GatheringByteChannel {
    private static final ByteBuffer EMPTY = ByteBuffer.allocate(0);

    private final SocketChannel channel;
    private final SSLEngine engine;
    /** Bytes read from the network, not yet decrypted (write mode between calls). */
    private ByteBuffer netIn;
    /** Decrypted bytes the caller has not taken (read mode). */
    private ByteBuffer appIn;

    private final ByteBuffer netOut;
    private final ReentrantLock writing = new ReentrantLock();

    private TlsChannel(SocketChannel channel, SSLEngine engine) {
        this.channel = channel;
        this.engine = engine;
        int packet = engine.getSession().getPacketBufferSize();
        this.netIn = ByteBuffer.allocate(Math.max(packet, 64 << 10));
        this.appIn = ByteBuffer.allocate(engine.getSession().getApplicationBufferSize())
                .flip();
        this.netOut = ByteBuffer.allocate(Math.max(packet, 64 << 10));
    }

    /**
     * Runs the handshake on {@code channel} (blocking) with {@code engine}, set for its side; a peer
     * silent for {@code timeout} meanwhile closes the channel.
     *
     * @throws SSLException when the handshake fails (a certificate refused, say)
     */
    static TlsChannel open(SocketChannel channel, SSLEngine engine, Duration timeout) throws IOException {
        TlsChannel t = new TlsChannel(channel, engine);
        boolean[] done = {false, false}; // finished; cut by the watchdog
        Thread watchdog = Thread.ofVirtual().start(() -> {
            try {
                Thread.sleep(timeout);
            } catch (InterruptedException e) {
                return;
            }
            synchronized (done) { // closed under the lock: a handshake that finished meanwhile is never cut
                if (done[0]) return;
                done[1] = true;
                try {
                    channel.close();
                } catch (IOException ignored) {
                    // closing is all there is to do
                }
            }
        });
        boolean cut;
        try {
            t.handshake();
        } catch (SSLException e) {
            t.sendAlert(); // the peer hears why (a certificate refused, say), not just a closed connection
            throw e;
        } catch (IOException e) {
            // the read the watchdog's close ended says nothing (an AsynchronousCloseException): say what happened
            if (finish(done, watchdog))
                throw new IOException("the peer was silent for " + timeout.toMillis() + " ms in the TLS handshake", e);
            throw e;
        } finally {
            cut = finish(done, watchdog);
        }
        if (cut) // the watchdog closed the channel as the handshake ended: it is no use
        throw new IOException(
                    "the TLS handshake took more than " + timeout.toMillis() + " ms, and the connection was closed");
        return t;
    }

    /** Ends the handshake's watch: from here the watchdog never closes the channel. Returns whether it had. */
    private static boolean finish(boolean[] done, Thread watchdog) {
        boolean cut;
        synchronized (done) {
            cut = done[1];
            done[0] = true;
        }
        watchdog.interrupt();
        return cut;
    }

    private void handshake() throws IOException {
        engine.beginHandshake();
        SSLEngineResult.HandshakeStatus hs = engine.getHandshakeStatus();
        while (hs != SSLEngineResult.HandshakeStatus.FINISHED
                && hs != SSLEngineResult.HandshakeStatus.NOT_HANDSHAKING) {
            switch (hs) {
                case NEED_WRAP -> {
                    writing.lock();
                    try {
                        netOut.clear();
                        SSLEngineResult r = engine.wrap(EMPTY, netOut);
                        flushNetOut();
                        hs = r.getHandshakeStatus();
                        if (r.getStatus() == SSLEngineResult.Status.CLOSED)
                            throw new EOFException("TLS closed in the handshake");
                    } finally {
                        writing.unlock();
                    }
                }
                case NEED_UNWRAP, NEED_UNWRAP_AGAIN -> {
                    netIn.flip();
                    SSLEngineResult r = engine.unwrap(netIn, appIn.compact());
                    appIn.flip();
                    netIn.compact();
                    switch (r.getStatus()) {
                        case BUFFER_UNDERFLOW -> readNet();
                        case BUFFER_OVERFLOW ->
                            appIn = growRead(appIn, engine.getSession().getApplicationBufferSize());
                        case CLOSED -> throw new EOFException("the peer closed the connection in the TLS handshake");
                        default -> {}
                    }
                    hs = r.getHandshakeStatus();
                }
                case NEED_TASK -> {
                    Runnable task;
                    while ((task = engine.getDelegatedTask()) != null) task.run();
                    hs = engine.getHandshakeStatus();
                }
                default -> throw new SSLException("TLS handshake in an unexpected state: " + hs);
            }
        }
    }

    /** After a failed handshake: the alert the engine has for the peer, sent as far as it goes. */
    private void sendAlert() {
        writing.lock();
        try {
            engine.closeOutbound();
            for (int i = 0; i < 4 && !engine.isOutboundDone(); i++) {
                netOut.clear();
                engine.wrap(EMPTY, netOut);
                flushNetOut();
            }
        } catch (IOException | RuntimeException ignored) {
            // the connection is closing anyway
        } finally {
            writing.unlock();
        }
    }

    private void readNet() throws IOException {
        if (!netIn.hasRemaining()) netIn = grow(netIn, engine.getSession().getPacketBufferSize());
        if (channel.read(netIn) < 0) throw new EOFException("the peer closed the connection");
    }

    /** A larger copy of {@code b}, in write mode (netIn): what it holds is kept, in write mode. */
    private static ByteBuffer grow(ByteBuffer b, int atLeast) {
        ByteBuffer bigger = ByteBuffer.allocate(Math.max(b.capacity() * 2, b.capacity() + atLeast));
        bigger.put(b.duplicate().flip());
        return bigger;
    }

    /** A larger copy of {@code b}, in read mode (appIn): what it holds is kept, in read mode. */
    private static ByteBuffer growRead(ByteBuffer b, int atLeast) {
        ByteBuffer bigger = ByteBuffer.allocate(Math.max(b.capacity() * 2, b.capacity() + atLeast));
        bigger.put(b.slice());
        return bigger.flip();
    }

    /** Decrypted bytes into {@code dst}: at least one, or -1 once the peer has closed. */
    @Override
    public int read(ByteBuffer dst) throws IOException {
        if (!dst.hasRemaining()) return 0;
        boolean buffered = false; // a record too large for dst goes through appIn
        while (true) {
            if (appIn.hasRemaining()) {
                int n = Math.min(dst.remaining(), appIn.remaining());
                dst.put(appIn.slice(appIn.position(), n));
                appIn.position(appIn.position() + n);
                return n;
            }
            // straight into the caller's buffer when a whole record fits there, else through appIn
            boolean direct = !buffered && dst.remaining() >= engine.getSession().getApplicationBufferSize();
            netIn.flip();
            SSLEngineResult r;
            int before = dst.position();
            try {
                if (direct) {
                    r = engine.unwrap(netIn, dst);
                } else {
                    appIn.compact();
                    try {
                        r = engine.unwrap(netIn, appIn);
                    } finally {
                        appIn.flip();
                    }
                }
            } finally {
                netIn.compact();
            }
            switch (r.getStatus()) {
                case OK -> {
                    runTasksAndAnswer(r.getHandshakeStatus());
                    if (direct && dst.position() > before) return dst.position() - before;
                }
                case BUFFER_UNDERFLOW -> {
                    if (!netIn.hasRemaining())
                        netIn = grow(netIn, engine.getSession().getPacketBufferSize());
                    if (channel.read(netIn) < 0) return -1;
                }
                case BUFFER_OVERFLOW -> {
                    if (direct) buffered = true;
                    else appIn = growRead(appIn, engine.getSession().getApplicationBufferSize());
                }
                case CLOSED -> {
                    return -1;
                }
            }
        }
    }

    /** After a record that was not data (a session ticket, a key update): its tasks, and any answer the peer is owed. */
    private void runTasksAndAnswer(SSLEngineResult.HandshakeStatus hs) throws IOException {
        if (hs == SSLEngineResult.HandshakeStatus.NEED_TASK) {
            Runnable task;
            while ((task = engine.getDelegatedTask()) != null) task.run();
            hs = engine.getHandshakeStatus();
        }
        if (hs == SSLEngineResult.HandshakeStatus.NEED_WRAP) write(new ByteBuffer[] {EMPTY}, 0, 1);
    }

    @Override
    public int write(ByteBuffer src) throws IOException {
        return (int) write(new ByteBuffer[] {src}, 0, 1);
    }

    @Override
    public long write(ByteBuffer[] srcs) throws IOException {
        return write(srcs, 0, srcs.length);
    }

    /** Encrypts every remaining byte of {@code srcs} and writes it all (blocking). */
    @Override
    public long write(ByteBuffer[] srcs, int offset, int length) throws IOException {
        writing.lock();
        try {
            long total = 0;
            int packet = engine.getSession().getPacketBufferSize();
            do {
                // as many records as netOut holds, then one write: fewer system calls than a write a record
                netOut.clear();
                do {
                    SSLEngineResult r = engine.wrap(srcs, offset, length, netOut);
                    if (r.getStatus() == SSLEngineResult.Status.CLOSED) throw new EOFException("TLS closed");
                    if (r.getStatus() == SSLEngineResult.Status.BUFFER_OVERFLOW) {
                        if (netOut.position() == 0) throw new SSLException("a TLS record larger than its buffer");
                        break; // full: write what it holds
                    }
                    total += r.bytesConsumed();
                    if (r.getHandshakeStatus() == SSLEngineResult.HandshakeStatus.NEED_TASK) {
                        Runnable task;
                        while ((task = engine.getDelegatedTask()) != null) task.run();
                    }
                } while (netOut.remaining() >= packet && remaining(srcs, offset, length));
                flushNetOut();
            } while (remaining(srcs, offset, length));
            return total;
        } finally {
            writing.unlock();
        }
    }

    private static boolean remaining(ByteBuffer[] srcs, int offset, int length) {
        for (int i = offset; i < offset + length; i++) if (srcs[i].hasRemaining()) return true;
        return false;
    }

    private void flushNetOut() throws IOException {
        netOut.flip();
        while (netOut.hasRemaining()) channel.write(netOut);
    }

    @Override
    public boolean isOpen() {
        return channel.isOpen();
    }

    @Override
    public void close() throws IOException {
        channel.close();
    }
}
