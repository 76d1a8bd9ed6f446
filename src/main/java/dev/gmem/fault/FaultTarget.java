package dev.gmem.fault;

import dev.gmem.linux.SyscallException;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.MemorySegment;

/**
 * The memory a fault engine fills, addressed by source offset: {@link OwnedTarget}, a guest memory
 * file gmem created, mapped and registered; or {@link ForeignTarget}, ranges in another process
 * behind a userfaultfd it sent, which gmem never maps, unmaps or writes with write().
 *
 * <p>The resolving calls return what {@link Userfaultfd}'s do: the bytes resolved (a prefix of the
 * range when the kernel stopped early), {@link Userfaultfd#EXISTS} when the first page is already
 * there, or {@link Userfaultfd#RETRY} when a removal is pending. Each page is populated once: a
 * target keeps populate-once claims, so two paths never both fill a page. They are safe to call
 * from several threads.
 */
public sealed interface FaultTarget extends AutoCloseable permits OwnedTarget, ForeignTarget {
    Userfaultfd userfaultfd();

    UffdMode mode();

    /** Source bytes covered: offsets {@code [0, size())}. */
    long size();

    /** The page size at {@code offset}. */
    long pageSize(long offset);

    /** The end of the contiguous part of the target that holds {@code offset}: one resolving call never crosses it. */
    long regionEnd(long offset);

    /** The source offset of a faulting address, or -1 when the address is outside the target. */
    long offsetOf(long address);

    /** UFFDIO_COPY of {@code bytes} to {@code offset}, over pages nobody populated. */
    long copy(long offset, MemorySegment bytes) throws IOException;

    /** Zero-filled pages over {@code [offset, offset+length)} (UFFDIO_ZEROPAGE, or a COPY of zeros where that is not available). */
    long zero(long offset, long length) throws IOException;

    /** Whether {@link #write} works: memory gmem owns. */
    boolean writable();

    /**
     * write() into the file at {@code offset} (memory gmem owns only): the bytes written, stopping at
     * the first page already populated; 0 when the first one is.
     */
    long write(long offset, MemorySegment bytes) throws IOException;

    /** UFFDIO_CONTINUE over pages the file holds (MINOR mode only): bytes mapped, EXISTS, RETRY or {@link Userfaultfd#NO_PAGE}. */
    long continueAt(long offset, long length) throws IOException;

    /** Wakes the threads waiting on faults in the range. */
    void wake(long offset, long length) throws SyscallException;

    /** Forgets populate-once claims on a range whose pages were removed, so that it can be populated again. */
    void forget(long offset, long length) throws IOException;

    /** Whether the range is still registered with userfaultfd. */
    boolean registered();

    /**
     * Unregisters the whole range, then wakes every waiting thread (the kernel does not wake faults
     * already read from the queue): they retry without userfaultfd. Memory gmem owns only; a
     * foreign target refuses.
     */
    void unregister() throws SyscallException;

    /** Releases what the target owns, and nothing else. Never throws. */
    @Override
    void close();
}
