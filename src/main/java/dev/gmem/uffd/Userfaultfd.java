package dev.gmem.uffd;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemoryLayout.PathElement;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;

/**
 * A userfaultfd and its one owner. Created by the system call where the kernel allows it, else
 * through {@code /dev/userfaultfd}, or received from another process ({@link #adopt});
 * {@link #via()} says which. The first call on a new one must be {@link #handshake}; a received one
 * was handshaken by its sender.
 *
 * <p>The resolving calls ({@link #copy}, {@link #zeropage}, {@link #continueRange}) return values
 * rather than raise for the two outcomes a fault handler expects: a non-negative count of bytes
 * resolved (fewer than asked means the kernel stopped early with EAGAIN: retry the rest), or
 * {@link #EXISTS} when the page is already there, or {@link #RETRY} when the kernel made no
 * progress and asks for a retry after the pending events are read. Every other error raises.
 * They are safe to call from several threads at once.
 */
public final class Userfaultfd implements AutoCloseable {
    /** Result of a resolving call: the destination page already exists (EEXIST). */
    public static final long EXISTS = -Errno.EEXIST.number();
    /** Result of a resolving call: no progress, read pending events then retry (EAGAIN). */
    public static final long RETRY = -Errno.EAGAIN.number();
    /** Result of CONTINUE: no page in the file at that offset (EFAULT). */
    public static final long NO_PAGE = -Errno.EFAULT.number();

    public static final Path DEVICE = Path.of("/dev/userfaultfd");

    /** How the descriptor was obtained. */
    public enum Source {
        SYSCALL,
        DEVICE,
        RECEIVED
    }

    /** What UFFDIO_API agreed: the features available and the ioctls allowed on the descriptor. */
    public record Api(long features, long ioctls) {}

    private static final ThreadLocal<MemorySegment> SCRATCH =
            ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(64, 8));

    private static final VarHandle API_API = field(UffdAbi.API, "api");
    private static final VarHandle API_FEATURES = field(UffdAbi.API, "features");
    private static final VarHandle API_IOCTLS = field(UffdAbi.API, "ioctls");
    private static final VarHandle RANGE_START = field(UffdAbi.RANGE, "start");
    private static final VarHandle RANGE_LEN = field(UffdAbi.RANGE, "len");
    private static final VarHandle REGISTER_START = field(UffdAbi.REGISTER, "range", "start");
    private static final VarHandle REGISTER_LEN = field(UffdAbi.REGISTER, "range", "len");
    private static final VarHandle REGISTER_MODE = field(UffdAbi.REGISTER, "mode");
    private static final VarHandle REGISTER_IOCTLS = field(UffdAbi.REGISTER, "ioctls");
    private static final VarHandle COPY_DST = field(UffdAbi.COPY, "dst");
    private static final VarHandle COPY_SRC = field(UffdAbi.COPY, "src");
    private static final VarHandle COPY_LEN = field(UffdAbi.COPY, "len");
    private static final VarHandle COPY_MODE = field(UffdAbi.COPY, "mode");
    private static final VarHandle COPY_RESULT = field(UffdAbi.COPY, "copy");
    /** ZEROPAGE and CONTINUE share one shape: a range, a mode and a result. */
    private static final VarHandle RANGED_START = field(UffdAbi.ZEROPAGE, "range", "start");

    private static final VarHandle RANGED_LEN = field(UffdAbi.ZEROPAGE, "range", "len");
    private static final VarHandle RANGED_MODE = field(UffdAbi.ZEROPAGE, "mode");
    private static final VarHandle ZEROPAGE_RESULT = field(UffdAbi.ZEROPAGE, "zeropage");
    private static final VarHandle CONTINUE_RESULT = field(UffdAbi.CONTINUE, "mapped");

    private static VarHandle field(MemoryLayout struct, String... path) {
        PathElement[] p = new PathElement[path.length];
        for (int i = 0; i < path.length; i++) p[i] = PathElement.groupElement(path[i]);
        return struct.varHandle(p);
    }

    private final Fd fd;
    private final Source via;
    private volatile Api api;

    private Userfaultfd(Fd fd, Source via) {
        this.fd = fd;
        this.via = via;
    }

    /**
     * A new userfaultfd, close-on-exec, with {@code flags} (O_NONBLOCK, UFFD_USER_MODE_ONLY). Tries
     * the system call first; if the kernel refuses it (EPERM without privilege, ENOSYS), opens
     * /dev/userfaultfd instead. Fails with the reasons of both when neither works.
     */
    public static Userfaultfd open(int flags) throws SyscallException {
        int f = flags | Linux.O_CLOEXEC;
        SyscallException syscallFailure;
        try {
            return new Userfaultfd(Fd.adopt(Posix.userfaultfd(f), "userfaultfd"), Source.SYSCALL);
        } catch (SyscallException e) {
            syscallFailure = e;
        }
        try (Fd device = Fd.open(DEVICE, Linux.O_RDWR | Linux.O_CLOEXEC, 0)) {
            int n = device.ioctl("USERFAULTFD_IOC_NEW", UffdAbi.USERFAULTFD_IOC_NEW, f);
            return new Userfaultfd(Fd.adopt(n, "userfaultfd"), Source.DEVICE);
        } catch (SyscallException e) {
            e.addSuppressed(syscallFailure);
            throw new SyscallException(
                    "userfaultfd",
                    "system call: " + syscallFailure.errnoText() + "; " + DEVICE + ": " + e.getMessage(),
                    e.errnoNumber());
        }
    }

    /**
     * Takes ownership of a userfaultfd received from another process (over a Unix socket), whose
     * sender already made the UFFDIO_API handshake with {@code features}; a second handshake would
     * fail with EINVAL, so {@link #handshake} must not be called on it. The descriptor is made
     * non-blocking if it is not (the flag belongs to the open file, which the sender shares), since
     * a fault engine polls it and drains it without blocking.
     */
    public static Userfaultfd adopt(Fd fd, long features) throws SyscallException {
        int flags = fd.fcntl(Linux.F_GETFL, 0);
        if ((flags & Linux.O_NONBLOCK) == 0) fd.fcntl(Linux.F_SETFL, flags | Linux.O_NONBLOCK);
        Userfaultfd u = new Userfaultfd(fd, Source.RECEIVED);
        u.api = new Api(features, -1L);
        return u;
    }

    /**
     * UFFDIO_API, which must come first: requests {@code features} and returns what the kernel
     * offers (all its features, whatever was asked) and the ioctls allowed. Unknown feature bits
     * give EINVAL; so does a second handshake on the same descriptor.
     */
    public Api handshake(long features) throws SyscallException {
        MemorySegment a = scratch();
        API_API.set(a, 0L, UffdAbi.UFFD_API);
        API_FEATURES.set(a, 0L, features);
        API_IOCTLS.set(a, 0L, 0L);
        try {
            fd.ioctl("UFFDIO_API", UffdAbi.UFFDIO_API, a);
        } catch (SyscallException e) {
            throw new SyscallException(
                    e.call(), e.arguments() + ", features=0x" + Long.toHexString(features), e.errnoNumber());
        }
        Api result = new Api((long) API_FEATURES.get(a, 0L), (long) API_IOCTLS.get(a, 0L));
        this.api = result;
        return result;
    }

    /** The result of the handshake, or null before it; for an adopted one, the sender's features and -1 for the ioctls (not known). */
    public Api api() {
        return api;
    }

    public Source via() {
        return via;
    }

    public Fd fd() {
        return fd;
    }

    /**
     * UFFDIO_REGISTER of {@code [start, start+length)} (addresses) with REGISTER_MODE_* bits;
     * returns the mask of ioctls the range allows.
     */
    public long register(long start, long length, long mode) throws SyscallException {
        MemorySegment r = scratch();
        REGISTER_START.set(r, 0L, start);
        REGISTER_LEN.set(r, 0L, length);
        REGISTER_MODE.set(r, 0L, mode);
        REGISTER_IOCTLS.set(r, 0L, 0L);
        try {
            fd.ioctl("UFFDIO_REGISTER", UffdAbi.UFFDIO_REGISTER, r);
        } catch (SyscallException e) {
            throw new SyscallException(
                    e.call(),
                    e.arguments() + ", start=0x" + Long.toHexString(start) + ", len=" + length + ", mode=" + mode,
                    e.errnoNumber());
        }
        return (long) REGISTER_IOCTLS.get(r, 0L);
    }

    /** Registers a range of a mapping; see {@link #register(long, long, long)}. */
    public long register(Mapping mapping, long offset, long length, long mode) throws SyscallException {
        checkRange(mapping, offset, length);
        return register(mapping.address() + offset, length, mode);
    }

    /** UFFDIO_UNREGISTER. */
    public void unregister(long start, long length) throws SyscallException {
        MemorySegment r = range(start, length);
        fd.ioctl("UFFDIO_UNREGISTER", UffdAbi.UFFDIO_UNREGISTER, r);
    }

    /** UFFDIO_WAKE: wakes the threads waiting on faults in the range. */
    public void wake(long start, long length) throws SyscallException {
        fd.ioctlShort("UFFDIO_WAKE", UffdAbi.UFFDIO_WAKE, range(start, length));
    }

    /**
     * UFFDIO_COPY of {@code length} bytes from {@code source} into the registered range at {@code dst}
     * (page-aligned). Returns the bytes copied, {@link #EXISTS} or {@link #RETRY}; see the class notes.
     */
    public long copy(long dst, MemorySegment source, long length, long mode) throws SyscallException {
        if (source.byteSize() < length)
            throw new IndexOutOfBoundsException("source holds " + source.byteSize() + " bytes, copy asks " + length);
        MemorySegment c = scratch();
        COPY_DST.set(c, 0L, dst);
        COPY_SRC.set(c, 0L, source.address());
        COPY_LEN.set(c, 0L, length);
        COPY_MODE.set(c, 0L, mode);
        COPY_RESULT.set(c, 0L, 0L);
        long r = resolve("UFFDIO_COPY", UffdAbi.UFFDIO_COPY, c, COPY_RESULT, mode, dst, length);
        java.lang.ref.Reference.reachabilityFence(source); // the kernel read it by the address above
        return r;
    }

    /** UFFDIO_ZEROPAGE: resolves the range with zeroed pages. Same results as {@link #copy}. */
    public long zeropage(long start, long length, long mode) throws SyscallException {
        return resolve(
                "UFFDIO_ZEROPAGE",
                UffdAbi.UFFDIO_ZEROPAGE,
                ranged(start, length, mode),
                ZEROPAGE_RESULT,
                mode,
                start,
                length);
    }

    /**
     * UFFDIO_CONTINUE: maps the pages the file already holds into a MINOR-registered range.
     * Returns the bytes mapped, {@link #EXISTS}, {@link #RETRY}, or {@link #NO_PAGE} when the file
     * has no page at some offset of the range.
     */
    public long continueRange(long start, long length, long mode) throws SyscallException {
        return resolve(
                "UFFDIO_CONTINUE",
                UffdAbi.UFFDIO_CONTINUE,
                ranged(start, length, mode),
                CONTINUE_RESULT,
                mode,
                start,
                length);
    }

    /** The argument of ZEROPAGE or CONTINUE, with the result cleared. */
    private static MemorySegment ranged(long start, long length, long mode) {
        MemorySegment z = scratch();
        RANGED_START.set(z, 0L, start);
        RANGED_LEN.set(z, 0L, length);
        RANGED_MODE.set(z, 0L, mode);
        ZEROPAGE_RESULT.set(z, 0L, 0L);
        return z;
    }

    private long resolve(
            String what, long request, MemorySegment args, VarHandle result, long mode, long start, long length)
            throws SyscallException {
        try {
            fd.ioctlShort(what, request, args);
            return (long) result.get(args, 0L);
        } catch (SyscallException e) {
            long progress = (long) result.get(args, 0L);
            // The kernel wakes the faulting threads only when the whole call succeeds: after a
            // partial success, wake the part that was resolved, so "resolved" always means "woken".
            if (progress > 0
                    && (e.is(Errno.EAGAIN) || e.is(Errno.EEXIST) || e.is(Errno.EFAULT))
                    && (mode & UffdAbi.MODE_DONTWAKE) == 0) {
                wake(start, progress);
            }
            if (e.is(Errno.EAGAIN)) return progress > 0 ? progress : RETRY;
            if (e.is(Errno.EEXIST)) return progress > 0 ? progress : EXISTS;
            if (e.is(Errno.EFAULT) && request == UffdAbi.UFFDIO_CONTINUE) return progress > 0 ? progress : NO_PAGE;
            throw new SyscallException(
                    e.call(),
                    e.arguments() + ", start=0x" + Long.toHexString(start) + ", len=" + length,
                    e.errnoNumber());
        }
    }

    /**
     * Reads pending events into {@code buffer} (a multiple of 32 bytes); returns how many messages
     * arrived, or 0 when the descriptor is non-blocking and none is pending.
     */
    public int read(MemorySegment buffer) throws SyscallException {
        try {
            return (int) (fd.read(buffer) / UffdAbi.MSG.byteSize());
        } catch (SyscallException e) {
            if (e.is(Errno.EAGAIN)) return 0;
            throw e;
        }
    }

    private static MemorySegment range(long start, long length) {
        MemorySegment r = scratch();
        RANGE_START.set(r, 0L, start);
        RANGE_LEN.set(r, 0L, length);
        return r;
    }

    private static MemorySegment scratch() {
        return SCRATCH.get();
    }

    private static void checkRange(Mapping mapping, long offset, long length) {
        if (offset < 0 || length <= 0 || offset > mapping.length() - length) {
            throw new IndexOutOfBoundsException(
                    "range [" + offset + ", +" + length + ") outside mapping of " + mapping.length() + " bytes");
        }
    }

    @Override
    public void close() throws SyscallException {
        fd.close();
    }

    /** Closes without reporting errors, for clean-up paths that already carry an exception. */
    public void closeQuietly() {
        fd.closeQuietly();
    }
}
