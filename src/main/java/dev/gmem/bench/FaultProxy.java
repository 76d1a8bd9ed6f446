package dev.gmem.bench;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy between the two sides of a test or a benchmark, for the faults this kernel cannot make (it has no netem):
 * a delay added to each direction, a bandwidth cap, every connection reset at once (RST, as a
 * dropped link looks), and a stall (bytes stop flowing both ways while the connections stay open,
 * as a silent peer looks). Real sockets on both sides; two threads per direction (a reader that
 * timestamps what it read, a writer that releases it once due and within the cap). Close it to
 * stop; every thread is a daemon and ends with its sockets.
 */
public final class FaultProxy implements AutoCloseable {
    private final ServerSocket listener;
    private final InetSocketAddress target;
    private final long delayNanos;
    private final long bytesPerSecond;
    private final List<Socket> open = new ArrayList<>();
    private final AtomicInteger connections = new AtomicInteger();
    private final AtomicInteger resets = new AtomicInteger();
    private volatile boolean stalled;
    /** Bytes from the target still to pass before one is flipped, or -1. */
    private final java.util.concurrent.atomic.AtomicLong corruptIn = new java.util.concurrent.atomic.AtomicLong(-1);

    private volatile boolean closed;

    /**
     * Listens on {@code listen} (port 0: any) and forwards to {@code target}, adding {@code delayMillis}
     * to each direction and capping each direction at {@code bytesPerSecond} (0: no cap).
     */
    public FaultProxy(InetSocketAddress listen, InetSocketAddress target, double delayMillis, long bytesPerSecond)
            throws IOException {
        this.listener = new ServerSocket();
        listener.setReuseAddress(true);
        listener.bind(listen);
        this.target = target;
        this.delayNanos = (long) (delayMillis * 1e6);
        this.bytesPerSecond = bytesPerSecond;
        Thread.ofPlatform().name("proxy-accept").daemon().start(this::accept);
    }

    public InetSocketAddress address() {
        return (InetSocketAddress) listener.getLocalSocketAddress();
    }

    /** Connections accepted so far. */
    public int connections() {
        return connections.get();
    }

    /** Resets done so far. */
    public int resets() {
        return resets.get();
    }

    /** Resets every open connection (RST on both sides). */
    public void resetAll() {
        List<Socket> now;
        synchronized (open) {
            now = new ArrayList<>(open);
            open.clear();
        }
        for (Socket s : now) {
            try {
                s.setSoLinger(true, 0); // close with RST
                s.close();
            } catch (IOException ignored) {
                // gone already
            }
        }
        resets.incrementAndGet();
    }

    /** Flips one byte of what the target sends, {@code after} bytes from now (over every connection). */
    public void corruptAfter(long after) {
        corruptIn.set(after);
    }

    /**
     * A thread that, until {@code done} or its work is over, resets every connection {@code resets}
     * times at random moments ({@code minGapMillis} plus up to {@code spreadMillis} apart) and, after
     * the {@code stallAfter}-th, stalls them for {@code stallMillis}. Join it when done.
     */
    public Thread chaos(
            java.util.Random rnd,
            java.util.concurrent.atomic.AtomicBoolean done,
            int resets,
            int stallAfter,
            long stallMillis,
            int minGapMillis,
            int spreadMillis) {
        return Thread.ofPlatform().name("proxy-chaos").daemon().start(() -> {
            try {
                for (int i = 0; i < resets + (stallAfter >= 0 ? 1 : 0) && !done.get(); i++) {
                    Thread.sleep(minGapMillis + rnd.nextInt(spreadMillis));
                    if (i == stallAfter) {
                        stall(true);
                        Thread.sleep(stallMillis);
                        stall(false);
                    } else {
                        resetAll();
                    }
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        });
    }

    /** Stops (true) or resumes (false) every byte in both directions, the connections left open. */
    public void stall(boolean on) {
        stalled = on;
    }

    private void accept() {
        while (!closed) {
            Socket client;
            try {
                client = listener.accept();
            } catch (IOException e) {
                return;
            }
            Socket server = new Socket();
            try {
                server.connect(target, 5000);
                client.setTcpNoDelay(true);
                server.setTcpNoDelay(true);
            } catch (IOException e) {
                close(client);
                close(server);
                continue;
            }
            connections.incrementAndGet();
            synchronized (open) {
                open.add(client);
                open.add(server);
            }
            pipe(client, server, false);
            pipe(server, client, true);
        }
    }

    /** One direction: a reader stamping chunks, a writer releasing them when due and within the cap. */
    private void pipe(Socket from, Socket to, boolean fromTarget) {
        BlockingQueue<Object[]> queue = new ArrayBlockingQueue<>(256);
        Object[] end = new Object[0];
        Thread.ofPlatform().name("proxy-read").daemon().start(() -> {
            try (InputStream in = from.getInputStream()) {
                while (!closed) {
                    byte[] b = new byte[64 << 10];
                    int n = in.read(b);
                    if (n < 0) break;
                    if (fromTarget) {
                        long left = corruptIn.get();
                        if (left >= 0 && left < n && corruptIn.compareAndSet(left, -1)) b[(int) left] ^= 0x5a;
                        else if (left >= n) corruptIn.compareAndSet(left, left - n);
                    }
                    queue.put(new Object[] {System.nanoTime() + delayNanos, b, n});
                }
            } catch (IOException | InterruptedException e) {
                // the connection went
            }
            try {
                queue.put(end);
            } catch (InterruptedException ignored) {
                // closing anyway
            }
        });
        Thread.ofPlatform().name("proxy-write").daemon().start(() -> {
            long budgetStart = System.nanoTime();
            long sent = 0;
            try (OutputStream out = to.getOutputStream()) {
                while (!closed) {
                    Object[] item = queue.poll(100, TimeUnit.MILLISECONDS);
                    if (item == null) continue;
                    if (item == end) break;
                    long due = (long) item[0];
                    while (stalled && !closed) Thread.sleep(5);
                    long wait = due - System.nanoTime();
                    if (wait > 0) TimeUnit.NANOSECONDS.sleep(wait);
                    int n = (int) item[2];
                    if (bytesPerSecond > 0) {
                        sent += n;
                        long earliest = budgetStart + (long) (sent * 1e9 / bytesPerSecond);
                        long w = earliest - System.nanoTime();
                        if (w > 0) TimeUnit.NANOSECONDS.sleep(w);
                        else if (w < -100_000_000L) { // idle for a while: the budget does not pile up
                            budgetStart = System.nanoTime();
                            sent = n;
                        }
                    }
                    out.write((byte[]) item[1], 0, n);
                    out.flush();
                }
            } catch (IOException | InterruptedException e) {
                // the connection went
            }
            close(from);
            close(to);
        });
    }

    private static void close(Socket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closed is closed
        }
    }

    @Override
    public void close() {
        closed = true;
        close(listener);
        resetAll();
    }

    private static void close(ServerSocket s) {
        try {
            s.close();
        } catch (IOException ignored) {
            // closed is closed
        }
    }
}
