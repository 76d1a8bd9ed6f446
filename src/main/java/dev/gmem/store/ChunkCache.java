package dev.gmem.store;

import java.io.IOException;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.FileTime;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Stream;

/**
 * A bounded cache of store objects on local disk, shared by every restore and handler of the host:
 * one file per object, named by its SHA-256 ({@code DIR/ab/abcdef…}), written under a temporary
 * name and renamed into place, so a concurrent reader in any process sees a whole object or none.
 * Every read is checked against the size and CRC32C the reader's manifest names: a file damaged or
 * cut short on disk is removed and reported as absent, and the object is fetched again. A hit sets the file's time; when the cache
 * passes its size, the files least recently used go first.
 */
public final class ChunkCache {
    private final Path dir;
    private final long maxBytes;
    /** This process's estimate of the cache's size, recounted from the disk every so often. */
    private final AtomicLong estimate = new AtomicLong(-1);

    private final AtomicLong hits = new AtomicLong();
    private final AtomicLong misses = new AtomicLong();
    private final AtomicLong damaged = new AtomicLong();

    /**
     * @throws IOException when the directory cannot be made, or when users other than its owner may
     *     write it, or its owner is neither this process's user nor root: the cache's files are
     *     checked against damage (CRC32C), not against forgery, so whoever can write them is trusted
     */
    public ChunkCache(Path dir, long maxBytes) throws IOException {
        this.dir = Files.createDirectories(dir, PRIVATE_DIR);
        this.maxBytes = maxBytes;
        var perms = Files.getPosixFilePermissions(this.dir);
        if (perms.contains(java.nio.file.attribute.PosixFilePermission.GROUP_WRITE)
                || perms.contains(java.nio.file.attribute.PosixFilePermission.OTHERS_WRITE))
            throw new IOException("cache directory " + dir + " is writable by users other than its owner ("
                    + java.nio.file.attribute.PosixFilePermissions.toString(perms)
                    + "): its files are trusted once their CRC32C matches, so gmem uses only a cache its owner"
                    + " alone can write (chmod go-w " + dir + ")");
        int owner = (Integer) Files.getAttribute(this.dir, "unix:uid");
        int self = (Integer) Files.getAttribute(Path.of("/proc/self"), "unix:uid");
        if (owner != self && owner != 0)
            throw new IOException("cache directory " + dir + " belongs to uid " + owner + ", not to this user (uid "
                    + self + ") or root: its files are trusted once their CRC32C matches");
    }

    /** New directories of the cache: written by their owner alone, whatever the umask allows. */
    private static final java.nio.file.attribute.FileAttribute<?> PRIVATE_DIR =
            java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
                    java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));

    /** The default place: {@code $XDG_CACHE_HOME/gmem/store}, or {@code ~/.cache/gmem/store}. */
    public static Path defaultDir() {
        String xdg = System.getenv("XDG_CACHE_HOME");
        Path base = xdg != null && !xdg.isEmpty() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache");
        return base.resolve("gmem").resolve("store");
    }

    public Path dir() {
        return dir;
    }

    private Path file(String hex) {
        return dir.resolve(hex.substring(0, 2)).resolve(hex);
    }

    /** The object's stored bytes, checked against {@code ref}, or null when the cache has no sound copy. */
    public byte[] get(StoreManifest.ObjectRef ref) {
        String hex = ref.hex();
        long length = ref.storedLength();
        Path f = file(hex);
        byte[] bytes;
        long size;
        try {
            size = Files.size(f);
            bytes = size == length ? Files.readAllBytes(f) : null;
        } catch (IOException e) {
            misses.incrementAndGet();
            return null;
        }
        if (bytes == null || !ref.matches(bytes)) {
            damaged.incrementAndGet();
            misses.incrementAndGet();
            try {
                Files.deleteIfExists(f);
            } catch (IOException e) {
                // another process removed or replaced it
            }
            return null;
        }
        hits.incrementAndGet();
        try {
            Files.setLastModifiedTime(f, FileTime.fromMillis(System.currentTimeMillis()));
        } catch (IOException e) {
            // removed meanwhile: the bytes read are sound all the same
        }
        return bytes;
    }

    /** Keeps {@code bytes} (already checked against their reference), then evicts what passes the bound. */
    public void put(String hex, byte[] bytes) {
        Path f = file(hex);
        try {
            Files.createDirectories(f.getParent(), PRIVATE_DIR);
            Path tmp = Files.createTempFile(f.getParent(), "." + hex.substring(0, 8), ".partial");
            // readable by every user of the host: the cache is shared, and its files are checked on every read
            Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
            try {
                Files.write(tmp, bytes);
                try {
                    Files.move(tmp, f, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
                } catch (AtomicMoveNotSupportedException e) {
                    Files.move(tmp, f, StandardCopyOption.REPLACE_EXISTING);
                }
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (IOException e) {
            return; // a full or read-only disk: the cache is an optimisation, the object came from the store
        }
        long now = estimate.get() < 0 ? count() : estimate.addAndGet(bytes.length);
        if (now > maxBytes) evict();
    }

    private long count() {
        long total = 0;
        for (Entry e : entries()) total += e.size();
        estimate.set(total);
        return total;
    }

    private record Entry(Path path, long size, long time) {}

    private List<Entry> entries() {
        List<Entry> out = new ArrayList<>();
        try (Stream<Path> all = Files.walk(dir, 2)) {
            for (Path p : (Iterable<Path>) all::iterator) {
                String n = p.getFileName().toString();
                if (n.endsWith(".partial")) {
                    // a writer killed before its rename: removed once an hour old
                    try {
                        if (System.currentTimeMillis()
                                        - Files.getLastModifiedTime(p).toMillis()
                                > 3_600_000L) Files.deleteIfExists(p);
                    } catch (IOException e) {
                        // renamed or removed meanwhile
                    }
                    continue;
                }
                if (n.length() != 64 || n.startsWith(".")) continue;
                try {
                    out.add(new Entry(
                            p, Files.size(p), Files.getLastModifiedTime(p).toMillis()));
                } catch (NoSuchFileException e) {
                    // evicted by another process
                }
            }
        } catch (IOException | java.io.UncheckedIOException e) {
            // a directory removed meanwhile: counted next time
        }
        return out;
    }

    /** Removes the least recently used files until the cache is at nine tenths of its bound. */
    synchronized void evict() {
        List<Entry> all = entries();
        long total = all.stream().mapToLong(Entry::size).sum();
        all.sort(Comparator.comparingLong(Entry::time));
        for (Entry e : all) {
            if (total <= maxBytes / 10 * 9) break;
            try {
                Files.deleteIfExists(e.path());
                total -= e.size();
            } catch (IOException x) {
                // another process's
            }
        }
        estimate.set(total);
    }

    public long hits() {
        return hits.get();
    }

    public long misses() {
        return misses.get();
    }

    /** Files found damaged on disk (and removed). */
    public long damaged() {
        return damaged.get();
    }
}
