package dev.gmem.store;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.bench.S3Server;
import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.testing.Host;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.LinkedHashMap;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * Snapshots in a real S3 server (S3Proxy on loopback, its own process): a push, a re-snapshot
 * with 5 % of its pages changed pushed against it as its base, both restored eagerly and lazily
 * through a cold and a warm cache, compared with the images they came from, and the first one's
 * unique objects collected once it is removed.
 */
@Timeout(300)
class StoreTest {
    static final long SIZE = 64L << 20;
    static final String BUCKET = "gmem-test";

    @TempDir
    static Path dir;

    static S3Server server;
    static Path first;
    static Path second;

    @BeforeAll
    static void serverAndImages() throws Exception {
        if (S3Server.jar() == null) return;
        server = S3Server.start(dir);
        try (StoreClient c = new StoreClient(server.options())) {
            c.createBucket(BUCKET);
        }
        first = dir.resolve("first.raw");
        ImageSynth.generate(first, SIZE, new ImageSynth.Mix(0.3, 0.1, 0.05), 11, 2, b -> {});
        // the re-snapshot: 5 % of the data pages changed, scattered over the whole guest
        second = dir.resolve("second.raw");
        try (RawImage image = RawImage.open(first, null, 2, b -> {})) {
            // and one window of data zeroed whole: the first snapshot's object for it is its alone
            int zeroed = 0;
            while (image.chunks().get(zeroed).dataPages() <= 100) zeroed++;
            ImageSynth.changed(first, second, 20, 12, java.util.Set.of(zeroed));
        }
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
    }

    static void assumeServer() {
        Assumptions.assumeTrue(server != null, "no S3Proxy jar at target/s3proxy/s3proxy.jar");
    }

    private Store store(Path cache) throws Exception {
        return store(cache, "fleet");
    }

    /** The store under {@code prefix}: each test has its own, so that one's damage is not another's. */
    private Store store(Path cache, String prefix) throws Exception {
        return new Store(
                new StoreClient(server.options()),
                S3Location.parse("s3://" + BUCKET + "/" + prefix + "/"),
                cache == null ? null : new ChunkCache(cache, 1L << 30));
    }

    private static StorePush.Report push(Store s, Path raw, String name, String base) throws Exception {
        try (RawImage image = RawImage.open(raw, null, 2, b -> {})) {
            return StorePush.push(
                    s,
                    image,
                    s.root().snapshot(name),
                    base == null ? null : s.root().snapshot(base),
                    Codec.LZ4,
                    new LinkedHashMap<>(),
                    4,
                    b -> {});
        }
    }

    private static void eagerMatches(StoreSource source, Path raw) throws Exception {
        try (Destination d = Destination.anonymous(GuestMemory.Backend.MEMFD, source);
                RawImage image = RawImage.open(raw, null, 2, b -> {})) {
            EagerRestore.restore(source, d.memory(), EagerRestore.Options.automatic(false), b -> {});
            EagerRestore.verifyContents(image, d.memory(), 2);
        }
    }

    @Test
    void pushDedupRestoreThroughColdAndWarmCacheThenCollect() throws Exception {
        assumeServer();
        Path cache = Files.createDirectories(dir.resolve("cache"));
        long t0 = System.nanoTime();
        try (Store s = store(null)) {
            StorePush.Report a = push(s, first, "vm-a", null);
            assertThat(a.objectsUploaded()).isPositive();
            assertThat(a.pagesFromBase()).isZero();
            // the same image again: every object is there already
            StorePush.Report again = push(s, first, "vm-a-again", null);
            assertThat(again.objectsUploaded()).isZero();
            StorePush.Report b = push(s, second, "vm-b", "vm-a");
            assertThat(b.uploadedFraction())
                    .as("a 5 %%-changed re-snapshot uploads about 5 %% of its data: %s", b)
                    .isLessThan(0.10);
            assertThat(b.pagesFromBase()).isGreaterThan(b.dataBytes() / 4096 * 9 / 10);
        }
        System.out.printf("store test: pushes done after %d ms%n", (System.nanoTime() - t0) / 1_000_000);
        for (String name : new String[] {"vm-a", "vm-b"}) {
            Path raw = name.equals("vm-a") ? first : second;
            // cold: a new cache, every object fetched
            Path cold = Files.createDirectories(dir.resolve("cold-" + name));
            try (Store s = store(cold);
                    StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/fleet/" + name))) {
                eagerMatches(src, raw);
                assertThat(s.traffic().gets()).isGreaterThan(1);
            }
            System.out.printf("store test: %s cold after %d ms%n", name, (System.nanoTime() - t0) / 1_000_000);
            // warm: the same cache, nothing fetched but the manifest
            try (Store s = store(cold);
                    StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/fleet/" + name))) {
                eagerMatches(src, raw);
                assertThat(s.traffic().gets())
                        .as("a cached snapshot: the manifest alone")
                        .isEqualTo(1);
            }
            // lazy, with the shared cache, every page read back by concurrent readers
            if (Host.hasUserfaultfd()) {
                try (Store s = store(cache);
                        StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/fleet/" + name))) {
                    LazyRestore.Outcome o = LazyRestore.run(
                            src,
                            GuestMemory.Backend.MEMFD,
                            LazyRestore.Options.defaults(UffdMode.MISSING),
                            new LazyRestore.Checks(2, 5, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
                    assertThat(o.verify().wrongPages()).isZero();
                }
            }
            System.out.printf("store test: %s lazy after %d ms%n", name, (System.nanoTime() - t0) / 1_000_000);
        }
        // vm-a and its copy gone: gc takes vm-a's objects that vm-b does not name, and vm-b restores still
        try (Store s = store(null)) {
            s.client().delete(BUCKET, java.util.List.of("fleet/snapshots/vm-a", "fleet/snapshots/vm-a-again"));
            StoreGc.Report g = StoreGc.run(s, Duration.ZERO, false);
            assertThat(g.removed()).isPositive();
            assertThat(g.snapshots()).isEqualTo(1);
            try (StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/fleet/vm-b"))) {
                eagerMatches(src, second);
            }
            assertThat(StoreGc.run(s, Duration.ZERO, false).removed()).isZero();
        }
    }

    /**
     * A store source's pool threads keep the priority of the thread that opened it, whatever thread
     * first gives them work: a post-copy push gives them work at nice 10, and faults use them too.
     */
    @Test
    void itsPoolThreadsKeepTheOpenersPriority() throws Exception {
        assumeServer();
        try (Store p = store(null, "nice")) {
            push(p, first, "vm-nice", null);
        }
        // with a cache, a reader in order reads ahead on the pools
        try (Store s = store(Files.createDirectories(dir.resolve("cache-nice")), "nice")) {
            int mine = dev.gmem.linux.Posix.threadNice();
            try (StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/nice/vm-nice"))) {
                java.util.concurrent.atomic.AtomicReference<Throwable> failed =
                        new java.util.concurrent.atomic.AtomicReference<>();
                Thread niced = Thread.ofPlatform().start(() -> {
                    try {
                        dev.gmem.linux.Posix.setThreadNice(Math.min(19, mine + 10));
                        eagerMatches(src, first); // every chunk fetched through the pools, from here
                    } catch (Throwable t) {
                        failed.set(t);
                    }
                });
                niced.join(120_000);
                assertThat(niced.isAlive()).isFalse();
                assertThat(failed.get()).isNull();
                java.util.Map<String, Integer> pools = dev.gmem.testing.ThreadNice.ofThreadsNamed("gmem-store-");
                assertThat(pools).as("the pools' threads").isNotEmpty();
                assertThat(pools.values()).as("%s", pools).containsOnly(mine);
            }
        }
    }

    /** The nice value of each of this process's threads named gmem-store-*, by thread id. */
    @Test
    void damagedObjectsAndMissingThingsAreNamed() throws Exception {
        assumeServer();
        try (Store s = store(null, "damaged")) {
            push(s, first, "vm-damaged", null);
            StoreManifest m = s.manifest(S3Location.parse("s3://" + BUCKET + "/damaged/vm-damaged"));
            String hex = m.chunks().stream()
                    .filter(c -> !c.layers().isEmpty())
                    .findFirst()
                    .orElseThrow()
                    .layers()
                    .getFirst()
                    .object()
                    .hex();
            // damage one object in the server's own files
            Path object = server.bucketDir(BUCKET)
                    .resolve("damaged")
                    .resolve("chunks")
                    .resolve(hex);
            assertThat(object).exists();
            byte[] bytes = Files.readAllBytes(object);
            bytes[bytes.length / 2] ^= 1;
            Files.write(object, bytes);
            // read as a restore reads it: the damage found, named, and the restore failed
            try (StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/damaged/vm-damaged"))) {
                assertThatThrownBy(() -> eagerMatches(src, first))
                        .satisfies(StoreTest::refusedAsDamaged)
                        .hasMessageContaining(hex)
                        .hasMessageContaining("its CRC32C 0x")
                        .hasMessageContaining("damaged in the store");
            }
            // and with a cache, found before guest memory is touched, by the check ahead
            try (Store cached = store(Files.createDirectories(dir.resolve("damaged-check")), "damaged");
                    StoreSource src =
                            StoreSource.open(cached, S3Location.parse("s3://" + BUCKET + "/damaged/vm-damaged"))) {
                assertThatThrownBy(() -> src.verify(2, b -> {}))
                        .hasMessageContaining(hex)
                        .hasMessageContaining("damaged in the store");
            }
            // an object longer than its manifest says: refused unread, as damaged, naming it
            Files.write(object, java.util.Arrays.copyOf(bytes, bytes.length + 100));
            try (StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/damaged/vm-damaged"))) {
                assertThatThrownBy(() -> eagerMatches(src, first))
                        .satisfies(StoreTest::refusedAsDamaged)
                        .hasMessageContaining(hex)
                        .hasMessageContaining((bytes.length + 100) + " bytes, more than the " + bytes.length)
                        .hasMessageContaining("damaged in the store");
            }
            assertThatThrownBy(() -> StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/damaged/no-such")))
                    .isInstanceOf(StoreException.class)
                    .hasMessageContaining("s3://" + BUCKET + "/damaged/snapshots/no-such: no such object");
        }
        try (Store s = new Store(new StoreClient(server.options()), S3Location.parse("s3://no-such-bucket/x/"), null)) {
            assertThatThrownBy(() -> StoreSource.open(s, S3Location.parse("s3://no-such-bucket/x/vm")))
                    .isInstanceOf(StoreException.class)
                    .hasMessageContaining("no such bucket 'no-such-bucket'");
        }
        var denied = server.options()
                .withCredentials(software.amazon.awssdk.auth.credentials.StaticCredentialsProvider.create(
                        software.amazon.awssdk.auth.credentials.AwsBasicCredentials.create(
                                S3Server.IDENTITY, "wrong")));
        try (Store s = new Store(new StoreClient(denied), S3Location.parse("s3://" + BUCKET + "/damaged/"), null)) {
            assertThatThrownBy(() -> StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/damaged/vm-damaged")))
                    .isInstanceOf(StoreException.class)
                    .hasMessageContaining("access denied");
        }
    }

    private static void refusedAsDamaged(Throwable t) {
        assertThat(t instanceof StoreFormatException || t.getCause() instanceof StoreFormatException)
                .as("refused as damaged data: %s", t)
                .isTrue();
    }

    /** A cache others may write is refused: its files are trusted once their CRC32C matches, which anyone can forge. */
    @Test
    void aCacheOthersMayWriteIsRefused() throws Exception {
        Path open = Files.createDirectories(dir.resolve("open-cache"));
        Files.setPosixFilePermissions(open, java.nio.file.attribute.PosixFilePermissions.fromString("rwxrwxrwx"));
        assertThatThrownBy(() -> new ChunkCache(open, 1 << 20))
                .isInstanceOf(java.io.IOException.class)
                .hasMessageContaining("writable by users other than its owner")
                .hasMessageContaining("chmod go-w");
        Files.setPosixFilePermissions(open, java.nio.file.attribute.PosixFilePermissions.fromString("rwxr-xr-x"));
        ChunkCache ok = new ChunkCache(open, 1 << 20);
        byte[] bytes = new byte[4096];
        bytes[1] = 7;
        var ref = StoreManifest.ObjectRef.of(bytes, Codec.NONE, bytes.length);
        ok.put(ref.hex(), bytes);
        Path sub = open.resolve(ref.hex().substring(0, 2));
        assertThat(java.nio.file.attribute.PosixFilePermissions.toString(Files.getPosixFilePermissions(sub)))
                .as("its subdirectories are its owner's alone too")
                .isEqualTo("rwxr-xr-x");
        assertThat(ok.get(ref)).isEqualTo(bytes);
    }

    @Test
    void aDamagedCacheFileIsFetchedAgain() throws Exception {
        assumeServer();
        Path cache = Files.createDirectories(dir.resolve("damaged-cache"));
        try (Store s = store(null, "cached")) {
            push(s, first, "vm-c", null);
        }
        try (Store s = store(cache, "cached");
                StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/cached/vm-c"))) {
            src.verify(2, b -> {});
        }
        long cut = 0;
        try (var files = Files.walk(cache)) {
            for (Path f : files.filter(Files::isRegularFile).limit(3).toList()) {
                byte[] b = Files.readAllBytes(f);
                Files.write(f, java.util.Arrays.copyOf(b, b.length / 2)); // cut short
                cut++;
            }
        }
        assertThat(cut).isEqualTo(3);
        try (Store s = store(cache, "cached");
                StoreSource src = StoreSource.open(s, S3Location.parse("s3://" + BUCKET + "/cached/vm-c"))) {
            eagerMatches(src, first);
            assertThat(s.cache().damaged()).isEqualTo(3);
            assertThat(s.traffic().gets()).isEqualTo(1 + 3);
        }
    }
}
