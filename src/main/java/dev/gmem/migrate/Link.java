package dev.gmem.migrate;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.net.Socket;
import java.util.zip.CRC32C;

/**
 * One connection of the post-copy protocol, either side: buffered frame streams, a lock for
 * writers (frames from several threads never interleave), the time of the last frame sent (for
 * heartbeats) and received (a silent peer is dropped). Closing it from any thread unblocks a
 * thread reading or writing it.
 */
final class Link implements AutoCloseable {
    private static final int BUFFER = 256 << 10;

    final Socket socket;
    final DataInputStream in;
    private final DataOutputStream out;
    private final java.util.concurrent.locks.ReentrantLock writing = new java.util.concurrent.locks.ReentrantLock();
    /** A writer's copy of native bytes; guarded by {@link #writing}. */
    private byte[] staging = new byte[0];

    private volatile long lastSent = System.nanoTime();
    private volatile long lastReceived = System.nanoTime();
    private volatile boolean closed;

    Link(Socket socket) throws IOException {
        this.socket = socket;
        socket.setTcpNoDelay(true);
        this.in = new DataInputStream(new BufferedInputStream(new Counting(socket.getInputStream()), BUFFER));
        this.out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream(), BUFFER));
    }

    /** Every byte read counts as a sign of life. */
    private final class Counting extends java.io.FilterInputStream {
        Counting(java.io.InputStream in) {
            super(in);
        }

        @Override
        public int read() throws IOException {
            int b = super.read();
            lastReceived = System.nanoTime();
            return b;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            int n = super.read(b, off, len);
            lastReceived = System.nanoTime();
            return n;
        }
    }

    long lastSent() {
        return lastSent;
    }

    long lastReceived() {
        return lastReceived;
    }

    boolean closed() {
        return closed;
    }

    /** Runs {@code write} (frames to {@link DataOutputStream}) under the writers' lock, then flushes. */
    void send(Writer write) throws IOException {
        writing.lock();
        try {
            write.write(out);
            out.flush();
            lastSent = System.nanoTime();
        } finally {
            writing.unlock();
        }
    }

    @FunctionalInterface
    interface Writer {
        void write(DataOutputStream out) throws IOException;
    }

    /**
     * Sends a PING unless a writer holds the link (then frames are flowing, or the peer has stopped
     * reading, which its own silence will tell): a heartbeat never waits behind a blocked write.
     */
    void ping() throws IOException {
        if (!writing.tryLock()) return;
        try {
            Protocol.writeHeader(out, Protocol.PING, 0);
            out.flush();
            lastSent = System.nanoTime();
        } finally {
            writing.unlock();
        }
    }

    /**
     * Sends a DATA frame: {@code id} (0 for a pushed batch), the pages from {@code offset}, and
     * {@code stored} (their bytes as coded by {@code codec}, with {@code rawCrc} the CRC32C of the raw bytes).
     */
    void sendData(long id, long offset, int pages, int codec, int rawCrc, int rawLength, MemorySegment stored)
            throws IOException {
        int n = (int) stored.byteSize();
        writing.lock();
        try {
            if (staging.length < n) staging = new byte[Math.max(n, 64 << 10)];
            MemorySegment.copy(stored, ValueLayout.JAVA_BYTE, 0, staging, 0, n);
            Protocol.writeHeader(out, Protocol.DATA, Protocol.DATA_FIELDS + n);
            out.writeLong(id);
            out.writeLong(offset);
            out.writeInt(pages);
            out.writeByte(codec);
            out.writeInt(rawCrc);
            out.writeInt(rawLength);
            out.write(staging, 0, n);
            out.flush();
            lastSent = System.nanoTime();
        } finally {
            writing.unlock();
        }
    }

    static int crc32c(MemorySegment bytes) {
        CRC32C c = new CRC32C();
        c.update(bytes.asByteBuffer());
        return (int) c.getValue();
    }

    String peer() {
        return String.valueOf(socket.getRemoteSocketAddress()).replaceFirst("^/", "");
    }

    @Override
    public void close() {
        closed = true;
        try {
            socket.close();
        } catch (IOException ignored) {
            // closed is closed
        }
    }
}
