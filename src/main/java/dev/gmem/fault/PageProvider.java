package dev.gmem.fault;

import dev.gmem.snapshot.PageKind;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * Where a fault engine gets pages: guest memory as source offsets {@code [0, size())}, each page a
 * data page, a zero page or a hole. Lookups ({@link #kind}, {@link #dataRun}, {@link #nextData})
 * answer from metadata the provider holds, without I/O. Bytes come through a {@link Fetcher}, and
 * every byte a fetcher delivers has been checked (a provider never delivers a page it could not
 * verify: it reports the failure instead).
 *
 * <p>The seam for remote providers: a fetch may complete before {@link Fetcher#fetch} returns (a
 * local snapshot) or later, on a thread of the provider (a page server, an object store). The
 * engine holds no lock while it calls {@code fetch}, and its delivery resolves the fault on
 * whichever thread it arrives.
 */
public interface PageProvider extends AutoCloseable {
    /** Source bytes. */
    long size();

    /** The page size at {@code offset}: every page of a region has the same. */
    long pageSize(long offset);

    /** What the page at {@code offset} holds. */
    PageKind kind(long offset);

    /**
     * Data pages from the data page at {@code offset} that one fetch can deliver together (they
     * are consecutive and in one unit of the source, such as a chunk), at most {@code maxPages},
     * at least 1.
     */
    int dataRun(long offset, int maxPages);

    /** The first data page at or after {@code offset}, or -1 when none is left. */
    long nextData(long offset);

    /** Source offsets of data pages in the order the guest first touched them; empty when none was recorded. */
    long[] accessOrder();

    /** A fetcher for one thread. */
    Fetcher fetcher();

    /**
     * For a provider whose pages arrive unasked (a page server's push): called once, when the
     * engine's background population starts, instead of the engine fetching every page itself.
     * The provider returns true and, on a thread of its own, hands every data page to {@code sink}
     * until it calls {@link PushSink#done} or {@link PushSink#failed}, or the sink is stopping.
     * Faults still fetch what they need at once. The default returns false: the engine fetches.
     */
    default boolean push(PushSink sink) {
        return false;
    }

    /** The source, for messages. */
    String describe();

    @Override
    void close() throws IOException;

    /** One thread's way to fetch pages; it keeps its own buffers. Close it on that thread. */
    interface Fetcher extends AutoCloseable {
        /**
         * Fetches {@code pages} data pages from {@code offset} (a run {@link #dataRun} allowed) and
         * hands them to {@code to}, now or later, exactly once: {@link Delivery#deliver} with the
         * bytes, or {@link Delivery#failed}. {@code token} is passed back unchanged. May also throw
         * when it fails before anything was started.
         */
        void fetch(long offset, int pages, long token, Delivery to) throws IOException;

        @Override
        void close();
    }

    /** Where a pushing provider's pages go: into the target, as the engine's own prefetch would put them. */
    interface PushSink {
        /**
         * Installs data pages {@code bytes} (valid only during this call) from {@code offset}: those
         * removed or already in place are skipped. Call it from one thread at a time.
         */
        void offer(long offset, MemorySegment bytes) throws IOException;

        /** Every data page has been offered: the population is complete. */
        void done();

        /** The push cannot go on: the engine fails with {@code cause}. */
        void failed(IOException cause);

        /** Whether the engine is stopping: the provider stops pushing. */
        boolean stopping();
    }

    /** Where fetched pages go. */
    interface Delivery {
        /** {@code bytes} (valid only during this call) hold the pages from {@code offset}. */
        void deliver(long token, long offset, MemorySegment bytes);

        /** The pages from {@code offset} cannot be had: {@code cause} says why (a checksum, an unreadable source, a lost connection). */
        void failed(long token, long offset, IOException cause);
    }
}
