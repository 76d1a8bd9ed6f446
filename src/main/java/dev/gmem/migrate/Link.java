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
 *
 * <p>A plain TCP socket that has a channel (made through {@code SocketChannel} or {@code
 * ServerSocketChannel}) moves pages without a copy in Java: a DATA frame's pages are written
 * from native memory with a gathering write, and read straight into native memory. A TLS socket
 * goes through its streams. A channel's reads ignore SO_TIMEOUT: whoever watches the link closes
 * it when it falls silent.
 */
final class Link implements AutoCloseable {
    private static final int BUFFER = 256 << 10;

    final Socket socket;
    /** The socket's channel (plain TCP), or null (TLS). */
    private final java.nio.channels.SocketChannel channel;

    private final ChannelInput channelIn;
    final DataInputStream in;
    private final DataOutputStream out;
    /** A DATA frame's header and fields, for a gathering write; guarded by {@link #writing}. */
    private final java.nio.ByteBuffer fields =
            java.nio.ByteBuffer.allocateDirect(Protocol.HEADER + Protocol.DATA_FIELDS);

    private final java.util.concurrent.locks.ReentrantLock writing = new java.util.concurrent.locks.ReentrantLock();
    /** A writer's copy of native bytes; guarded by {@link #writing}. */
    private byte[] staging = new byte[0];

    private volatile long lastSent = System.nanoTime();
    private volatile long lastReceived = System.nanoTime();
    private volatile boolean closed;

    Link(Socket socket) throws IOException {
        this.socket = socket;
        socket.setTcpNoDelay(true);
        this.channel = socket.getChannel();
        if (channel != null) {
            this.channelIn = new ChannelInput();
            this.in = new DataInputStream(channelIn);
            this.out = new DataOutputStream(
                    new BufferedOutputStream(java.nio.channels.Channels.newOutputStream(channel), 64 << 10));
        } else {
            this.channelIn = null;
            this.in = new DataInputStream(new BufferedInputStream(new Counting(socket.getInputStream()), BUFFER));
            this.out = new DataOutputStream(new BufferedOutputStream(socket.getOutputStream(), BUFFER));
        }
    }

    /** A channel's bytes, buffered in native memory; every byte read counts as a sign of life. */
    private final class ChannelInput extends java.io.InputStream {
        private final java.nio.ByteBuffer buffer =
                java.nio.ByteBuffer.allocateDirect(64 << 10).flip();

        private boolean fill() throws IOException {
            buffer.compact();
            int n;
            try {
                n = channel.read(buffer);
            } finally {
                buffer.flip();
            }
            if (n < 0) return false;
            lastReceived = System.nanoTime();
            return true;
        }

        @Override
        public int read() throws IOException {
            while (!buffer.hasRemaining()) if (!fill()) return -1;
            return buffer.get() & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) return 0;
            while (!buffer.hasRemaining()) if (!fill()) return -1;
            int n = Math.min(len, buffer.remaining());
            buffer.get(b, off, n);
            return n;
        }

        /** Exactly {@code dst}'s bytes: what is buffered, then straight from the channel. */
        void readFully(MemorySegment dst) throws IOException {
            java.nio.ByteBuffer into = dst.asByteBuffer();
            int take = Math.min(buffer.remaining(), into.remaining());
            if (take > 0) {
                java.nio.ByteBuffer part = buffer.slice(buffer.position(), take);
                into.put(part);
                buffer.position(buffer.position() + take);
            }
            while (into.hasRemaining()) {
                if (channel.read(into) < 0) throw new java.io.EOFException("the peer closed the connection mid-frame");
                lastReceived = System.nanoTime();
            }
        }
    }

    /** Reads the next {@code dst.byteSize()} bytes of the stream into {@code dst} (native memory where the link can). */
    void readFully(MemorySegment dst, byte[] scratch) throws IOException {
        if (channelIn != null) {
            channelIn.readFully(dst);
            return;
        }
        int n = (int) dst.byteSize();
        in.readFully(scratch, 0, n);
        MemorySegment.copy(scratch, 0, dst, ValueLayout.JAVA_BYTE, 0, n);
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

    boolean hasChannel() {
        return channel != null;
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
            if (channel != null) { // the header and the pages in one gathering write, the pages from native memory
                out.flush();
                fields.clear();
                fields.put((byte) Protocol.DATA)
                        .put((byte) 0)
                        .putShort((short) 0)
                        .putInt(Protocol.DATA_FIELDS + n);
                fields.putLong(id)
                        .putLong(offset)
                        .putInt(pages)
                        .put((byte) codec)
                        .putInt(rawCrc)
                        .putInt(rawLength);
                fields.flip();
                java.nio.ByteBuffer[] parts = {fields, stored.asByteBuffer()};
                while (parts[1].hasRemaining() || parts[0].hasRemaining()) channel.write(parts);
                lastSent = System.nanoTime();
                return;
            }
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
