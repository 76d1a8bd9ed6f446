package dev.gmem.fc;

import dev.gmem.fault.ForeignRegion;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Poller;
import dev.gmem.linux.UnixSockets;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import tools.jackson.core.JacksonException;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * What a VMM sends a page-fault handler when it restores a VM with Firecracker's {@code Uffd}
 * memory backend: one message on the accepted Unix socket, compact JSON (an array of one object per
 * guest memory region) with exactly one descriptor attached, the userfaultfd on which the VMM has
 * already made the UFFDIO_API handshake and registered every region in MISSING mode. See
 * docs/fc-handler.md.
 *
 * <p>The handshake owns {@code uffd} until it is handed to a session; {@link #close} closes it.
 *
 * @param regions the guest memory regions, end to end in the memory file from offset 0
 * @param uffd the received userfaultfd
 */
public record Handshake(List<ForeignRegion> regions, Fd uffd) implements AutoCloseable {
    /** The most regions a handshake may list: a VMM has a handful; more is a malformed message. */
    public static final int MAX_REGIONS = 64;

    /** The largest message read: a handful of regions is some hundred bytes. */
    private static final int MAX_MESSAGE = 64 << 10;

    private static final long SMALL_PAGE = 4096;
    private static final long HUGE_PAGE = 2L << 20;
    private static final JsonMapper JSON = JsonMapper.builder().build();

    /** What Firecracker's secret-hiding branch sends after the handshake when it wants no exitless async page faults. */
    public static final String NO_EXITLESS_APF = "no_exitless_apf";

    private static final java.util.regex.Pattern GUEST_MEMFD =
            java.util.regex.Pattern.compile("\"is_guest_memfd\"\\s*:\\s*true");

    /**
     * Receives the handshake on {@code connection}: collects the message until its descriptor has
     * arrived (a zero-length read first is tolerated, as Firecracker's own example does), within
     * {@code timeout}, then checks it against a memory file of {@code sourceSize} bytes.
     *
     * @throws HandshakeException naming what is wrong; every descriptor received is closed
     */
    public static Handshake receive(Fd connection, Duration timeout, long sourceSize) throws IOException {
        long deadline = System.nanoTime() + timeout.toNanos();
        StringBuilder json = new StringBuilder();
        List<Fd> fds = new ArrayList<>();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(MAX_MESSAGE);
            while (fds.isEmpty()) {
                long left = (deadline - System.nanoTime()) / 1_000_000;
                if (left <= 0
                        || new Poller(Linux.POLLIN, connection).poll((int) Math.min(Integer.MAX_VALUE, left)) == 0) {
                    throw new HandshakeException("the client sent no descriptor in " + timeout.toMillis() + " ms");
                }
                UnixSockets.Received r = UnixSockets.receive(connection, buffer, 4);
                fds.addAll(r.fds());
                if (r.truncatedControl()) throw new HandshakeException("the message carried more descriptors than one");
                if (r.bytes() == 0 && r.fds().isEmpty()) {
                    throw new HandshakeException("the client closed the connection before sending its descriptor");
                }
                json.append(new String(
                        buffer.asSlice(0, r.bytes()).toArray(ValueLayout.JAVA_BYTE), StandardCharsets.UTF_8));
                if (json.length() > MAX_MESSAGE)
                    throw new HandshakeException("the message is longer than " + MAX_MESSAGE + " bytes");
            }
            if (GUEST_MEMFD.matcher(json).find())
                throw new HandshakeException("the regions are guest_memfd (is_guest_memfd, Firecracker's secret-hiding"
                        + " branch): gmem serves anonymous memory registered with userfaultfd, not guest_memfd");
            if (fds.size() != 1)
                throw new HandshakeException(
                        "the message carried " + fds.size() + " descriptors, not one (the userfaultfd)");
            requireUserfaultfd(fds.get(0));
            Handshake h = new Handshake(parse(json.toString(), sourceSize), fds.get(0));
            fds.clear(); // the handshake owns it now
            return h;
        } finally {
            for (Fd fd : fds) fd.closeQuietly();
        }
    }

    /**
     * The regions of a handshake's JSON, checked against a memory file of {@code sourceSize} bytes.
     * Text after the array is read past if it is {@value #NO_EXITLESS_APF}, which Firecracker's
     * secret-hiding branch sends next on the same socket (a stream: it may arrive with the array).
     */
    public static List<ForeignRegion> parse(String json, long sourceSize) throws HandshakeException {
        int end = json.lastIndexOf(']');
        String after = end < 0 ? "" : json.substring(end + 1).strip();
        if (!after.isEmpty()) {
            if (after.startsWith("exitless_apf"))
                throw new HandshakeException(
                        "the VMM asks for exitless async page faults (" + after + "), which gmem does not serve");
            if (!after.equals(NO_EXITLESS_APF))
                throw new HandshakeException("unexpected text after the regions: '" + abbreviate(after) + "'");
            json = json.substring(0, end + 1);
        }
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (JacksonException e) {
            throw new HandshakeException("the message is not JSON");
        }
        if (root == null || !root.isArray()) throw new HandshakeException("the message is not a JSON array of regions");
        if (root.isEmpty()) throw new HandshakeException("the message lists no region");
        if (root.size() > MAX_REGIONS)
            throw new HandshakeException("the message lists " + root.size() + " regions, more than " + MAX_REGIONS);
        List<ForeignRegion> regions = new ArrayList<>();
        long expectedOffset = 0;
        for (int i = 0; i < root.size(); i++) {
            JsonNode r = root.get(i);
            String at = "region " + i;
            if (!r.isObject()) throw new HandshakeException(at + " is not an object");
            long base = u64(r, "base_host_virt_addr", at);
            long size = u64(r, "size", at);
            long offset = u64(r, "offset", at);
            long page = u64(r, "page_size", at);
            if (r.has("page_size_kib") && u64(r, "page_size_kib", at) != page) {
                // Firecracker sends both, equal, in bytes despite the name
                throw new HandshakeException(
                        at + ": page_size_kib " + r.get("page_size_kib") + " differs from page_size " + page);
            }
            if (page != SMALL_PAGE && page != HUGE_PAGE)
                throw new HandshakeException(at + ": page_size " + page + " is neither 4096 nor 2097152");
            if (size == 0) throw new HandshakeException(at + ": size is 0");
            if (base % page != 0 || size % page != 0) {
                throw new HandshakeException(at + ": base_host_virt_addr 0x" + Long.toHexString(base) + " and size "
                        + size + " must be multiples of page_size " + page);
            }
            if (Long.compareUnsigned(base, -1L - size) > 0)
                throw new HandshakeException(at + ": base_host_virt_addr + size overflows");
            if (offset != expectedOffset) {
                throw new HandshakeException(at + ": offset " + offset + " is not " + expectedOffset
                        + " (regions lie end to end in the memory file)");
            }
            if (offset % page != 0)
                throw new HandshakeException(at + ": offset " + offset + " is not a multiple of page_size " + page);
            if (size > sourceSize || offset > sourceSize - size) {
                throw new HandshakeException(at + ": offset " + offset + " + size " + size
                        + " is past the end of the memory file (" + sourceSize + " bytes)");
            }
            regions.add(new ForeignRegion(base, size, offset, page));
            expectedOffset = offset + size;
        }
        List<ForeignRegion> byAddress = new ArrayList<>(regions);
        byAddress.sort(Comparator.comparingLong(ForeignRegion::hostAddress));
        for (int i = 1; i < byAddress.size(); i++) {
            if (Long.compareUnsigned(
                            byAddress.get(i).hostAddress(), byAddress.get(i - 1).hostEnd())
                    < 0) {
                throw new HandshakeException(
                        "regions " + byAddress.get(i - 1) + " and " + byAddress.get(i) + " overlap");
            }
        }
        return List.copyOf(regions);
    }

    private static String abbreviate(String text) {
        String oneLine = text.replaceAll("\\s+", " ");
        return oneLine.length() <= 40 ? oneLine : oneLine.substring(0, 40) + "...";
    }

    private static long u64(JsonNode r, String field, String at) throws HandshakeException {
        JsonNode v = r.get(field);
        if (v == null) throw new HandshakeException(at + ": no " + field);
        if (!v.isIntegralNumber())
            throw new HandshakeException(at + ": " + field + " is not an unsigned 64-bit integer");
        java.math.BigInteger b = v.bigIntegerValue();
        if (b.signum() < 0 || b.bitLength() > 64)
            throw new HandshakeException(at + ": " + field + " is not an unsigned 64-bit integer");
        return b.longValue();
    }

    /** The descriptor must be a userfaultfd: the kernel names its file {@code anon_inode:[userfaultfd]}. */
    private static void requireUserfaultfd(Fd fd) throws IOException {
        String target;
        try {
            target = Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd.number()))
                    .toString();
        } catch (IOException e) {
            throw new HandshakeException("cannot tell what the received descriptor is: " + e.getMessage());
        }
        if (!target.equals("anon_inode:[userfaultfd]"))
            throw new HandshakeException("the received descriptor is " + target + ", not a userfaultfd");
    }

    @Override
    public void close() {
        uffd.closeQuietly();
    }
}
