package dev.gmem.fc;

import dev.gmem.memory.PageBitmap;
import dev.gmem.snapshot.Region;
import java.io.BufferedWriter;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.function.Consumer;
import java.util.function.LongConsumer;

/**
 * {@code --record-access}: the data pages the VMs' faults bring in (each faulting page and its
 * fault-around), in first-touch order over every session
 * of the handler, each page once, written as the guest physical address of the page, one per line
 * ({@code 0x…}), the form {@code gmem snapshot pack --access-order FILE} takes. So the next restore
 * of the snapshot prefetches that working set first.
 *
 * <p>The fault thread only marks the page and queues its address; a thread of the recorder's,
 * {@code gmem-fc-record}, writes the file, so a slow disk never holds a fault. When the queue is
 * full (the disk has stalled far behind), addresses are dropped, with one line to the log.
 *
 * <p>Only faults are recorded: a page the prefetch filled first is not, so with {@code --prefetch
 * all} the record holds the pages the VMs needed before the prefetch reached them (with {@code
 * --prefetch off}, every data page they touched). The file is written as the VMs run, and flushed
 * when a session ends and on close, so a handler that is killed leaves what it had flushed.
 * A write error stops the recording, with one line to the log, and never a fault.
 */
public final class AccessRecorder implements LongConsumer, AutoCloseable {
    private static final long PAGE = 4096;

    private final Path file;
    private final List<Region> regions;
    private final PageBitmap seen;
    private final Consumer<String> log;
    private final BufferedWriter out;
    /** Guest addresses for the writer. */
    private final java.util.concurrent.ArrayBlockingQueue<Long> queue =
            new java.util.concurrent.ArrayBlockingQueue<>(QUEUE);

    private final Thread writer;
    // guarded by this
    private long recorded;
    private long written;
    private long dropped;
    private volatile boolean broken;
    private volatile boolean closed;

    private static final int QUEUE = 1 << 16;

    private AccessRecorder(Path file, List<Region> regions, long size, Consumer<String> log, BufferedWriter out) {
        this.file = file;
        this.regions = List.copyOf(regions);
        this.seen = new PageBitmap((size + PAGE - 1) / PAGE);
        this.log = log;
        this.out = out;
        this.writer = Thread.ofPlatform().name("gmem-fc-record").daemon().start(this::write);
    }

    /**
     * Creates (or truncates) {@code file} for a source of {@code regions} ({@code size} bytes);
     * {@code log} hears a write error, once.
     */
    public static AccessRecorder create(Path file, List<Region> regions, long size, Consumer<String> log)
            throws IOException {
        BufferedWriter out = Files.newBufferedWriter(
                file,
                StandardCharsets.US_ASCII,
                StandardOpenOption.CREATE,
                StandardOpenOption.TRUNCATE_EXISTING,
                StandardOpenOption.WRITE);
        try {
            out.write("# gmem fc-handler --record-access: data pages in first-touch order, one guest physical address"
                    + " per line (gmem snapshot pack --access-order)\n");
            out.flush();
        } catch (IOException e) {
            out.close();
            throw e;
        }
        return new AccessRecorder(file, regions, size, log, out);
    }

    public Path file() {
        return file;
    }

    /** Records the data page at source {@code offset}, if it is the first time: marks it and queues it, nothing more. */
    @Override
    public void accept(long offset) {
        if (broken || closed) return;
        long page = offset / PAGE;
        long guest;
        synchronized (this) {
            if (page < 0 || page >= seen.pages() || seen.get(page)) return;
            seen.set(page);
            guest = guestAddress(offset - offset % PAGE);
            if (guest < 0) return; // outside every region: the handshake's check makes this impossible
            recorded++;
        }
        if (!queue.offer(guest)) dropped();
    }

    private void dropped() {
        boolean first;
        synchronized (this) {
            first = dropped++ == 0;
        }
        if (first)
            log.accept("--record-access: " + file + " cannot be written fast enough; pages are left out of the record");
    }

    /** The writer thread: the queue to the file, flushed whenever it runs dry. */
    private void write() {
        try {
            while (true) {
                Long a = queue.poll(100, java.util.concurrent.TimeUnit.MILLISECONDS);
                if (a == null) {
                    if (closed) return;
                    continue;
                }
                if (broken) continue;
                try {
                    if (a >= 0) {
                        out.write("0x");
                        out.write(Long.toHexString(a));
                        out.write('\n');
                    }
                    if (queue.isEmpty()) out.flush();
                } catch (IOException e) {
                    fail(e);
                }
                synchronized (this) {
                    if (a >= 0) written++;
                    notifyAll();
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private long guestAddress(long offset) {
        for (Region r : regions) {
            if (offset >= r.fileOffset() && offset - r.fileOffset() < r.size())
                return r.guestAddress() + (offset - r.fileOffset());
        }
        return -1;
    }

    /** Pages recorded so far (queued for the file, if not yet written). */
    public synchronized long recorded() {
        return recorded;
    }

    /** Waits (up to 10 s) until every page recorded so far is written out. */
    public void flush() {
        long deadline = System.nanoTime() + 10_000_000_000L;
        synchronized (this) {
            long want = recorded - dropped;
            while (written < want && !broken && System.nanoTime() < deadline && writer.isAlive()) {
                try {
                    wait(50);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
    }

    private void fail(IOException e) {
        if (broken) return;
        broken = true;
        log.accept("--record-access stopped: cannot write " + file + " (" + e.getMessage() + "); " + written
                + " pages written before");
    }

    /** Writes out what is queued, stops the writer and closes the file. */
    @Override
    public void close() {
        flush();
        closed = true;
        try {
            writer.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        try {
            out.close();
        } catch (IOException e) {
            fail(e);
        }
    }
}
