package dev.gmem.linux;

import java.lang.foreign.Arena;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.ValueLayout;
import java.lang.ref.Reference;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * AF_UNIX sockets: pairs, listening and connecting by path, and messages that carry file
 * descriptors (SCM_RIGHTS), as the userfaultfd hand-over between a VMM and a page-fault handler
 * needs. Every socket is created close-on-exec; received descriptors are close-on-exec too.
 */
public final class UnixSockets {
    /** {@code struct msghdr} (LP64): 56 bytes. */
    public static final StructLayout MSGHDR = MemoryLayout.structLayout(
            ValueLayout.ADDRESS.withName("msg_name"),
            ValueLayout.JAVA_INT.withName("msg_namelen"),
            MemoryLayout.paddingLayout(4),
            ValueLayout.ADDRESS.withName("msg_iov"),
            ValueLayout.JAVA_LONG.withName("msg_iovlen"),
            ValueLayout.ADDRESS.withName("msg_control"),
            ValueLayout.JAVA_LONG.withName("msg_controllen"),
            ValueLayout.JAVA_INT.withName("msg_flags"),
            MemoryLayout.paddingLayout(4));
    /** {@code struct iovec}: 16 bytes. */
    public static final StructLayout IOVEC = MemoryLayout.structLayout(
            ValueLayout.ADDRESS.withName("iov_base"), ValueLayout.JAVA_LONG.withName("iov_len"));
    /** {@code struct cmsghdr} header; its data follows at offset 16. */
    public static final StructLayout CMSGHDR = MemoryLayout.structLayout(
            ValueLayout.JAVA_LONG.withName("cmsg_len"),
            ValueLayout.JAVA_INT.withName("cmsg_level"),
            ValueLayout.JAVA_INT.withName("cmsg_type"));
    /** {@code struct ucred { pid_t pid; uid_t uid; gid_t gid; }}: 12 bytes. */
    public static final StructLayout UCRED = MemoryLayout.structLayout(
            ValueLayout.JAVA_INT.withName("pid"),
            ValueLayout.JAVA_INT.withName("uid"),
            ValueLayout.JAVA_INT.withName("gid"));
    /** {@code struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }}: 110 bytes. */
    public static final long SOCKADDR_UN_SIZE = 110;

    private static final int SUN_PATH_MAX = 108;
    /** The most descriptors one message may carry (the kernel's SCM_MAX_FD). */
    public static final int MAX_FDS = 253;

    private UnixSockets() {}

    /** The credentials of the process at the other end of a socket (SO_PEERCRED). */
    public record PeerCredentials(int pid, int uid, int gid) {}

    /** A received message: {@code bytes} of data in the caller's buffer, and the descriptors it carried. */
    public record Received(long bytes, List<Fd> fds, boolean truncatedControl) {}

    private static int check(String call, String args, long r, MemorySegment st) throws SyscallException {
        if (r < 0) throw new SyscallException(call, args, Native.errno(st));
        return (int) r;
    }

    /** socketpair(AF_UNIX, type): two connected sockets. */
    public static Fd[] pair(int type) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sv = arena.allocate(ValueLayout.JAVA_INT, 2);
            MemorySegment st = Native.callState();
            long r = Native.syscall(st, Sys.SOCKETPAIR, Linux.AF_UNIX, type | Linux.SOCK_CLOEXEC, 0, sv.address());
            check("socketpair", "AF_UNIX, type=" + type, r, st);
            return new Fd[] {
                Fd.adopt(sv.getAtIndex(ValueLayout.JAVA_INT, 0), "socketpair[0]"),
                Fd.adopt(sv.getAtIndex(ValueLayout.JAVA_INT, 1), "socketpair[1]")
            };
        }
    }

    private static MemorySegment address(Arena arena, Path path) {
        byte[] bytes = path.toString().getBytes(StandardCharsets.UTF_8);
        if (bytes.length >= SUN_PATH_MAX) {
            throw new IllegalArgumentException("socket path longer than " + (SUN_PATH_MAX - 1) + " bytes: " + path);
        }
        MemorySegment sa = arena.allocate(SOCKADDR_UN_SIZE);
        sa.set(ValueLayout.JAVA_SHORT, 0, (short) Linux.AF_UNIX);
        MemorySegment.copy(bytes, 0, sa, ValueLayout.JAVA_BYTE, 2, bytes.length);
        return sa;
    }

    private static Fd socket(int type) throws SyscallException {
        MemorySegment st = Native.callState();
        long fd = Native.syscall(st, Sys.SOCKET, Linux.AF_UNIX, type | Linux.SOCK_CLOEXEC, 0);
        return Fd.adopt(check("socket", "AF_UNIX, type=" + type, fd, st), "unix socket");
    }

    /** A stream socket bound to {@code path} and listening. The path must not exist. */
    public static Fd listen(Path path, int backlog) throws SyscallException {
        Fd sock = socket(Linux.SOCK_STREAM);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sa = address(arena, path);
            MemorySegment st = Native.callState();
            try {
                check(
                        "bind",
                        path.toString(),
                        Native.syscall(st, Sys.BIND, sock.number(), sa.address(), SOCKADDR_UN_SIZE),
                        st);
                check("listen", path.toString(), Native.syscall(st, Sys.LISTEN, sock.number(), backlog), st);
            } catch (SyscallException e) {
                sock.closeQuietly();
                throw e;
            }
            return sock;
        }
    }

    /** A stream socket connected to the listener at {@code path}. */
    public static Fd connect(Path path) throws SyscallException {
        Fd sock = socket(Linux.SOCK_STREAM);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment sa = address(arena, path);
            MemorySegment st = Native.callState();
            long r = Native.syscall(st, Sys.CONNECT, sock.number(), sa.address(), SOCKADDR_UN_SIZE);
            if (r < 0) {
                SyscallException e = new SyscallException("connect", path.toString(), Native.errno(st));
                sock.closeQuietly();
                throw e;
            }
            return sock;
        }
    }

    /** accept4(2): the next connection on a listening socket (blocks). */
    public static Fd accept(Fd listener) throws SyscallException {
        MemorySegment st = Native.callState();
        while (true) {
            long fd = Native.syscall(st, Sys.ACCEPT4, listener.number(), 0, 0, Linux.SOCK_CLOEXEC);
            if (fd >= 0) return Fd.adopt((int) fd, "unix connection");
            if (Native.errno(st) != Errno.EINTR.number())
                throw new SyscallException("accept4", "fd=" + listener.number(), Native.errno(st));
        }
    }

    /** sendmsg(2) of {@code data} with {@code fds} attached (SCM_RIGHTS); returns the bytes sent. */
    @SuppressWarnings("restricted") // the control buffer is gmem's own, of the size it allocated
    public static long send(Fd socket, MemorySegment data, List<Fd> fds) throws SyscallException {
        if (fds.size() > MAX_FDS)
            throw new IllegalArgumentException("at most " + MAX_FDS + " descriptors per message, not " + fds.size());
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment msg = message(arena, data, fds.size());
            if (!fds.isEmpty()) {
                MemorySegment control = msg.get(
                                ValueLayout.ADDRESS,
                                MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_control")))
                        .reinterpret(controlSpace(fds.size()));
                control.set(ValueLayout.JAVA_LONG, 0, CMSGHDR.byteSize() + 4L * fds.size());
                control.set(ValueLayout.JAVA_INT, 8, Linux.SOL_SOCKET);
                control.set(ValueLayout.JAVA_INT, 12, Linux.SCM_RIGHTS);
                for (int i = 0; i < fds.size(); i++) {
                    control.set(
                            ValueLayout.JAVA_INT,
                            CMSGHDR.byteSize() + 4L * i,
                            fds.get(i).number());
                }
            }
            MemorySegment st = Native.callState();
            while (true) {
                // the message points at data: it stays reachable until the call returns
                long n = Native.syscall(st, Sys.SENDMSG, socket.number(), msg, Linux.MSG_NOSIGNAL, 0);
                Reference.reachabilityFence(data);
                if (n >= 0) return n;
                if (Native.errno(st) != Errno.EINTR.number()) {
                    throw new SyscallException(
                            "sendmsg",
                            "fd=" + socket.number() + ", len=" + data.byteSize() + ", fds=" + fds.size(),
                            Native.errno(st));
                }
            }
        }
    }

    /**
     * recvmsg(2) into {@code buffer}, accepting up to {@code maxFds} descriptors. The caller owns
     * the returned descriptors. {@code bytes} is 0 when the peer has closed the connection.
     */
    @SuppressWarnings("restricted") // the control message's address comes from the kernel: its size is the kernel's
    public static Received receive(Fd socket, MemorySegment buffer, int maxFds) throws SyscallException {
        if (maxFds < 0 || maxFds > MAX_FDS) throw new IllegalArgumentException("maxFds must be 0.." + MAX_FDS);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment msg = message(arena, buffer, maxFds);
            MemorySegment st = Native.callState();
            long n;
            while (true) {
                n = Native.syscall(st, Sys.RECVMSG, socket.number(), msg, Linux.MSG_CMSG_CLOEXEC, 0);
                Reference.reachabilityFence(buffer);
                if (n >= 0) break;
                if (Native.errno(st) != Errno.EINTR.number()) {
                    throw new SyscallException(
                            "recvmsg", "fd=" + socket.number() + ", len=" + buffer.byteSize(), Native.errno(st));
                }
            }
            int flags = msg.get(
                    ValueLayout.JAVA_INT, MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_flags")));
            long controlLength = msg.get(
                    ValueLayout.JAVA_LONG, MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_controllen")));
            List<Fd> fds = new ArrayList<>();
            if (maxFds > 0 && controlLength >= CMSGHDR.byteSize()) {
                MemorySegment control = msg.get(
                                ValueLayout.ADDRESS,
                                MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_control")))
                        .reinterpret(controlLength);
                long offset = 0;
                while (offset + CMSGHDR.byteSize() <= controlLength) {
                    long length = control.get(ValueLayout.JAVA_LONG, offset);
                    int level = control.get(ValueLayout.JAVA_INT, offset + 8);
                    int type = control.get(ValueLayout.JAVA_INT, offset + 12);
                    if (length < CMSGHDR.byteSize() || offset + length > controlLength) break;
                    if (level == Linux.SOL_SOCKET && type == Linux.SCM_RIGHTS) {
                        for (long p = offset + CMSGHDR.byteSize(); p + 4 <= offset + length; p += 4) {
                            fds.add(Fd.adopt(control.get(ValueLayout.JAVA_INT, p), "received fd"));
                        }
                    }
                    offset += (length + 7) & ~7L;
                }
            }
            return new Received(n, List.copyOf(fds), (flags & Linux.MSG_CTRUNC) != 0);
        }
    }

    private static long controlSpace(int fds) {
        return fds == 0 ? 0 : CMSGHDR.byteSize() + ((4L * fds + 7) & ~7L);
    }

    private static MemorySegment message(Arena arena, MemorySegment data, int fds) {
        MemorySegment iov = arena.allocate(IOVEC);
        iov.set(ValueLayout.ADDRESS, 0, data);
        iov.set(ValueLayout.JAVA_LONG, 8, data.byteSize());
        MemorySegment msg = arena.allocate(MSGHDR);
        msg.set(ValueLayout.ADDRESS, MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_iov")), iov);
        msg.set(ValueLayout.JAVA_LONG, MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_iovlen")), 1L);
        if (fds > 0) {
            MemorySegment control = arena.allocate(controlSpace(fds), 8);
            msg.set(
                    ValueLayout.ADDRESS,
                    MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_control")),
                    control);
            msg.set(
                    ValueLayout.JAVA_LONG,
                    MSGHDR.byteOffset(MemoryLayout.PathElement.groupElement("msg_controllen")),
                    controlSpace(fds));
        }
        return msg;
    }

    /** SO_PEERCRED: who is at the other end of a connected socket. */
    public static PeerCredentials peerCredentials(Fd socket) throws SyscallException {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cred = arena.allocate(UCRED);
            MemorySegment len = arena.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, (int) UCRED.byteSize());
            MemorySegment st = Native.callState();
            long r = Native.syscall(
                    st,
                    Sys.GETSOCKOPT,
                    socket.number(),
                    Linux.SOL_SOCKET,
                    Linux.SO_PEERCRED,
                    cred.address(),
                    len.address());
            check("getsockopt SO_PEERCRED", "fd=" + socket.number(), r, st);
            return new PeerCredentials(
                    cred.get(ValueLayout.JAVA_INT, 0),
                    cred.get(ValueLayout.JAVA_INT, 4),
                    cred.get(ValueLayout.JAVA_INT, 8));
        }
    }
}
