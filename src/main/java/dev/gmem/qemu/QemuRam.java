package dev.gmem.qemu;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import tools.jackson.databind.JsonNode;

/**
 * Guest RAM of a running QEMU, found over QMP: the machine's memory backend, which must be shared
 * (share=on) and backed by a file (memory-backend-file or memory-backend-memfd), so that its pages
 * can be read without going through QEMU and QEMU's migration can leave them out
 * ({@code x-ignore-shared}). The file is opened through QEMU's own descriptor for it
 * ({@code /proc/PID/fd/N}), found by the shared mapping of the backend's size: that works for a
 * named file, an unlinked one in a mem-path directory, and a memfd alike.
 *
 * @param id the backend's id ("pc.ram")
 * @param type its QOM type ("memory-backend-file")
 * @param size its size in bytes
 * @param file the path gmem reads it through, {@code /proc/PID/fd/N}
 */
public record QemuRam(String id, String type, long size, Path file) {
    /** Thrown when the VM's RAM cannot be taken as gmem takes it; the message says what to change. */
    public static final class NotShareableException extends IOException {
        private static final long serialVersionUID = 1L;

        public NotShareableException(String message) {
            super(message);
        }
    }

    /** Finds the RAM of the QEMU at the other end of {@code qmp}. */
    public static QemuRam locate(Qmp qmp) throws IOException {
        String backendPath;
        try {
            backendPath = qmp.execute("qom-get", Map.of("path", "/machine", "property", "memory-backend"))
                    .asString("");
        } catch (QmpException e) {
            if (e.errorClass() == null) throw e; // the connection, not QEMU's answer
            backendPath = "";
        }
        if (backendPath.isEmpty()) {
            throw new NotShareableException(
                    "this QEMU's machine names no memory backend (-machine memory-backend=ID); gmem takes RAM from one"
                            + " shared backend: " + recipe("ram0", 0));
        }
        String id = backendPath.substring(backendPath.lastIndexOf('/') + 1);
        String type = qmp.execute("qom-get", Map.of("path", backendPath, "property", "type"))
                .asString("");
        JsonNode memdev = null;
        for (JsonNode d : qmp.execute("query-memdev", Map.of())) {
            if (id.equals(d.path("id").asString(""))) memdev = d;
        }
        if (memdev == null) throw new QmpException("QEMU lists no memory backend '" + id + "' (query-memdev)");
        long size = memdev.path("size").asLong();
        boolean shared = memdev.path("share").asBoolean(false);
        if (!shared) {
            throw new NotShareableException("guest RAM '" + id + "' (" + type + ") has share=off, so QEMU's migration"
                    + " would copy all of it (x-ignore-shared skips shared RAM only): " + recipe(id, size));
        }
        if (!type.equals("memory-backend-file") && !type.equals("memory-backend-memfd")) {
            throw new NotShareableException(
                    "guest RAM '" + id + "' is a " + type + ", which has no file gmem can read: " + recipe(id, size));
        }
        String memPath = type.equals("memory-backend-file")
                ? qmp.execute("qom-get", Map.of("path", backendPath, "property", "mem-path"))
                        .asString("")
                : null;
        return new QemuRam(id, type, size, findFile(qmp.pid(), id, size, memPath));
    }

    private static String recipe(String id, long size) {
        String s = size > 0 && size % (1 << 20) == 0 ? (size >> 20) + "M" : "SIZE";
        return "start QEMU with -object memory-backend-memfd,id=" + id + ",size=" + s
                + ",share=on -machine memory-backend=" + id
                + " (or memory-backend-file with mem-path on tmpfs and share=on)";
    }

    /** A shared mapping of QEMU's, from /proc/PID/maps. */
    private record SharedMapping(long size, long device, long inode, String name) {}

    /**
     * QEMU's descriptor for the backend's file: the one whose file is that of the shared mapping of
     * {@code size} bytes at offset 0 ({@code memPath} tells apart two such mappings).
     */
    static Path findFile(int pid, String id, long size, String memPath) throws IOException {
        List<SharedMapping> candidates = new ArrayList<>();
        Path maps = Path.of("/proc", Integer.toString(pid), "maps");
        List<String> lines;
        try {
            lines = Files.readAllLines(maps);
        } catch (AccessDeniedException e) {
            throw new AccessDeniedException(
                    maps.toString(), null, "gmem must run as QEMU's user or as root to read its RAM");
        }
        for (String line : lines) {
            String[] f = line.trim().split("\\s+", 6);
            if (f.length < 6 || f[1].length() < 4 || f[1].charAt(3) != 's' || !f[2].matches("0+")) continue;
            String[] range = f[0].split("-");
            long mapped = Long.parseUnsignedLong(range[1], 16) - Long.parseUnsignedLong(range[0], 16);
            if (mapped != size) continue;
            String[] dev = f[3].split(":");
            long device = makedev(Long.parseLong(dev[0], 16), Long.parseLong(dev[1], 16));
            candidates.add(new SharedMapping(mapped, device, Long.parseLong(f[4]), f[5]));
        }
        if (candidates.size() > 1 && memPath != null) {
            List<SharedMapping> named = new ArrayList<>();
            for (SharedMapping m : candidates) {
                if (m.name().equals(memPath)
                        || m.name().startsWith(memPath + "/qemu_back_mem." + id + ".")
                        || m.name().equals(memPath + " (deleted)")) named.add(m);
            }
            candidates = named;
        }
        if (candidates.size() != 1) {
            throw new IOException("cannot tell which of QEMU's (pid " + pid + ") shared mappings holds guest RAM '" + id
                    + "': " + candidates.size() + " mappings of " + size + " bytes");
        }
        SharedMapping ram = candidates.getFirst();
        Path fds = Path.of("/proc", Integer.toString(pid), "fd");
        try (DirectoryStream<Path> dir = Files.newDirectoryStream(fds)) {
            for (Path fd : dir) {
                try {
                    Map<String, Object> a = Files.readAttributes(fd, "unix:ino,dev");
                    if (((Number) a.get("ino")).longValue() == ram.inode()
                            && ((Number) a.get("dev")).longValue() == ram.device()) return fd;
                } catch (IOException e) {
                    // a descriptor closed meanwhile, or one that is not a file
                }
            }
        } catch (AccessDeniedException e) {
            throw new AccessDeniedException(
                    fds.toString(), null, "gmem must run as QEMU's user or as root to read its RAM");
        }
        throw new IOException(String.format(
                Locale.ROOT,
                "QEMU (pid %d) maps guest RAM '%s' (%s) but holds no descriptor for it",
                pid,
                id,
                ram.name()));
    }

    /** The kernel's dev_t encoding, as stat reports it. */
    static long makedev(long major, long minor) {
        return ((major & 0xfffff000L) << 32)
                | ((major & 0xfffL) << 8)
                | ((minor & 0xffffff00L) << 12)
                | (minor & 0xffL);
    }

    /** Opens the RAM file for reading. */
    public Fd open() throws IOException {
        return Fd.open(file, Linux.O_RDONLY | Linux.O_CLOEXEC, 0, "QEMU RAM " + id);
    }
}
