package dev.gmem.migrate;

import java.io.BufferedOutputStream;
import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.Socket;
import java.nio.ByteBuffer;
import java.nio.channels.Channels;
import java.nio.channels.GatheringByteChannel;
import java.nio.channels.SocketChannel;
import java.util.concurrent.locks.ReentrantLock;
import java.util.zip.CRC32C;

/**
 * One connection of the post-copy protocol, either side, over a blocking {@link SocketChannel},
 * plain or through a {@link TlsChannel}: buffered frames in native memory, a lock for writers
 * (frames from several threads never interleave), and the times of the last frame sent (for
 * heartbeats) and of the last byte received (a silent peer is dropped: a channel's reads have no
 * time-out of their own, so whoever watches the link closes it). A DATA frame's pages move
 * without a copy in Java: written from native memory with a gathering write (encrypted from it,
 * with TLS), and read straight into native memory. Closing the link from any thread unblocks a
 * thread reading or writing it.
 */
final class Link implements AutoCloseable {
    final Socket socket;
    private final SocketChannel channel;
    /** What frames are read from and written to: the channel, or TLS over it. */
    private final java.nio.channels.ReadableByteChannel reader;

    private final GatheringByteChannel writer;

    private final ChannelInput channelIn;
    final DataInputStream in;
    private final DataOutputStream out;
    private final ReentrantLock writing = new ReentrantLock();
    /** A DATA frame's header and fields, for a gathering write; guarded by {@link #writing}. */
    private final ByteBuffer fields = ByteBuffer.allocateDirect(Protocol.HEADER + Protocol.DATA_FIELDS);

    private volatile long lastSent = System.nanoTime();
    private volatile long lastReceived = System.nanoTime();
    private volatile boolean closed;

    /** A link over {@code channel}, connected and blocking; {@code tls} (or null) is TLS already set up over it. */
    Link(SocketChannel channel, TlsChannel tls) throws IOException {
        this.channel = channel;
        this.socket = channel.socket();
        socket.setTcpNoDelay(true);
        this.reader = tls == null ? channel : tls;
        this.writer = tls == null ? channel : tls;
        this.channelIn = new ChannelInput();
        this.in = new DataInputStream(channelIn);
        this.out = new DataOutputStream(new BufferedOutputStream(Channels.newOutputStream(writer), 64 << 10));
    }

    /**
     * The channel's bytes, buffered in native memory; every byte read counts as a sign of life. The
     * buffer is small: a DATA frame's header is read through it, and what it read ahead of the
     * pages is copied again into their place, so a large one copied a quarter of every 256 KiB
     * batch twice. Reads larger than the buffer go straight to the channel, 64 KiB at a time.
     */
    private final class ChannelInput extends java.io.InputStream {
        private static final int BUFFER = 4096;
        private final ByteBuffer buffer = ByteBuffer.allocateDirect(BUFFER).flip();

        private boolean fill() throws IOException {
            buffer.compact();
            int n;
            try {
                n = reader.read(buffer);
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
            if (!buffer.hasRemaining() && len >= BUFFER) { // a large read (a map): straight from the channel
                // at most 64 KiB a call: the JDK reads a heap buffer through a direct one of its size, and keeps it
                int n = reader.read(ByteBuffer.wrap(b, off, Math.min(len, 64 << 10)));
                if (n > 0) lastReceived = System.nanoTime();
                return n;
            }
            while (!buffer.hasRemaining()) if (!fill()) return -1;
            int n = Math.min(len, buffer.remaining());
            buffer.get(b, off, n);
            return n;
        }

        /** Exactly {@code dst}'s bytes: what is buffered, then straight from the channel. */
        void readFully(MemorySegment dst) throws IOException {
            ByteBuffer into = dst.asByteBuffer();
            int take = Math.min(buffer.remaining(), into.remaining());
            if (take > 0) {
                into.put(buffer.slice(buffer.position(), take));
                buffer.position(buffer.position() + take);
            }
            while (into.hasRemaining()) {
                if (reader.read(into) < 0) throw new java.io.EOFException("the peer closed the connection mid-frame");
                lastReceived = System.nanoTime();
            }
        }
    }

    /** Reads the next {@code dst.byteSize()} bytes of the stream straight into {@code dst}. */
    void readFully(MemorySegment dst) throws IOException {
        channelIn.readFully(dst);
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

    private final java.util.concurrent.atomic.AtomicBoolean pinging = new java.util.concurrent.atomic.AtomicBoolean();

    /**
     * {@link #ping} on a thread of its own (virtual), one at a time: a peer that stopped reading
     * blocks that thread alone, not the heartbeat that watches every link. A ping that fails closes the link.
     */
    void pingAsync() {
        if (!pinging.compareAndSet(false, true)) return;
        Thread.ofVirtual().name("gmem-pc-ping").start(() -> {
            try {
                ping();
            } catch (IOException e) {
                close();
            } finally {
                pinging.set(false);
            }
        });
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
     * {@code stored} (their bytes as coded by {@code codec}, with {@code rawCrc} the CRC32C of the
     * raw bytes), in one gathering write from native memory.
     */
    void sendData(long id, long offset, int pages, int codec, int rawCrc, int rawLength, MemorySegment stored)
            throws IOException {
        int n = (int) stored.byteSize();
        writing.lock();
        try {
            out.flush();
            fields.clear();
            fields.put((byte) Protocol.DATA).put((byte) 0).putShort((short) 0).putInt(Protocol.DATA_FIELDS + n);
            fields.putLong(id)
                    .putLong(offset)
                    .putInt(pages)
                    .put((byte) codec)
                    .putInt(rawCrc)
                    .putInt(rawLength);
            fields.flip();
            ByteBuffer[] parts = {fields, stored.asByteBuffer()};
            while (parts[1].hasRemaining() || parts[0].hasRemaining()) writer.write(parts);
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

    /**
     * Closes after a last message (an ERROR): this side's end of the stream first, then what the
     * peer still sends is read and dropped, for 200 ms and 4 MiB at most, then the close. Closing
     * with unread bytes would send a reset, and a reset can overtake the last message, so that the
     * peer never reads it.
     */
    public void closeAfterLastMessage() {
        try {
            channel.shutdownOutput();
            channel.configureBlocking(false);
            ByteBuffer sink = ByteBuffer.allocate(64 << 10);
            long deadline = System.nanoTime() + 200_000_000L;
            for (long total = 0; total < (4 << 20) && System.nanoTime() < deadline; ) {
                int n = channel.read(sink.clear());
                if (n < 0) break;
                if (n == 0) Thread.sleep(5);
                total += n;
            }
        } catch (IOException e) {
            // closing anyway
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } finally {
            close();
        }
    }

    @Override
    public void close() {
        closed = true;
        try {
            channel.close();
        } catch (IOException ignored) {
            // closed is closed
        }
    }
}
