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
    private long recorded;
    private boolean broken;

    private AccessRecorder(Path file, List<Region> regions, long size, Consumer<String> log, BufferedWriter out) {
        this.file = file;
        this.regions = List.copyOf(regions);
        this.seen = new PageBitmap((size + PAGE - 1) / PAGE);
        this.log = log;
        this.out = out;
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

    /** Records the data page at source {@code offset}, if it is the first time. */
    @Override
    public synchronized void accept(long offset) {
        if (broken) return;
        long page = offset / PAGE;
        if (page < 0 || page >= seen.pages() || seen.get(page)) return;
        seen.set(page);
        long guest = guestAddress(offset - offset % PAGE);
        if (guest < 0) return; // outside every region: the handshake's check makes this impossible
        try {
            out.write("0x");
            out.write(Long.toHexString(guest));
            out.write('\n');
            recorded++;
        } catch (IOException e) {
            fail(e);
        }
    }

    private long guestAddress(long offset) {
        for (Region r : regions) {
            if (offset >= r.fileOffset() && offset - r.fileOffset() < r.size())
                return r.guestAddress() + (offset - r.fileOffset());
        }
        return -1;
    }

    /** Pages recorded so far. */
    public synchronized long recorded() {
        return recorded;
    }

    /** Writes out what is buffered. */
    public synchronized void flush() {
        if (broken) return;
        try {
            out.flush();
        } catch (IOException e) {
            fail(e);
        }
    }

    private void fail(IOException e) {
        broken = true;
        log.accept("--record-access stopped: cannot write " + file + " (" + e.getMessage() + "); " + recorded
                + " pages recorded before");
    }

    @Override
    public synchronized void close() {
        flush();
        try {
            out.close();
        } catch (IOException e) {
            if (!broken) fail(e);
        }
    }
}
