package dev.gmem.bench;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.Chunk;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.store.ChunkCache;
import dev.gmem.store.S3Location;
import dev.gmem.store.Store;
import dev.gmem.store.StoreClient;
import dev.gmem.store.StoreManifest;
import dev.gmem.store.StorePush;
import dev.gmem.store.StoreSource;
import dev.gmem.util.OutputFile;
import dev.gmem.util.Parallel;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * The store against a real S3 server on loopback (S3Proxy, its own process, filesystem back end),
 * in one run: push (fresh, and a 5 %-changed re-snapshot against it), pull against a plain parallel
 * download of the same objects with the same client and threads (the server's limit), a cold lazy
 * restore's time to ready, a chunk read uncached, from the disk cache and from memory, and the
 * prefetch until fully resident; the two HTTP clients compared on the pull.
 */
public final class StoreBench {
    private StoreBench() {}

    public record Options(long size, int threads, Path dir) {}

    public record Latency(String path, int samples, double p50Us, double p99Us) {}

    public record Pull(String httpClient, double storeGibPerS, double plainGibPerS, double ratio) {}

    /**
     * Objects of one size on the same server: a fault's GET (one at a time, checked), the throughput
     * of GETs with the pull's requests in flight, and the requests a guest's data would take.
     */
    public record ObjectSize(int bytes, double faultP50Us, double faultMaxUs, double gibPerS, long requestsForData) {}

    public record Report(
            long guestBytes,
            long dataBytes,
            double pushGibPerS,
            double rePushGibPerS,
            double reUploadedFraction,
            long rePagesFromBase,
            List<Pull> pulls,
            double coldReadyMs,
            double coldManifestMs,
            List<Latency> latency,
            List<ObjectSize> objectSizes,
            Double prefetchGibPerS,
            Double residentMs) {}

    /** The object sizes weighed against each other: the store's is the snapshot's 1 MiB window. */
    static final int[] OBJECT_SIZES = {64 << 10, 256 << 10, 1 << 20, 4 << 20};

    private static final String BUCKET = "gmem-bench";

    public static Report run(Options o, Consumer<String> status) throws Exception {
        Path work = OutputFile.scratchDirectory(o.dir(), "gmem-bench-store-");
        try (S3Server server = S3Server.start(work)) {
            try (StoreClient c = new StoreClient(server.options())) {
                c.createBucket(BUCKET);
            }
            status.accept("making a " + (o.size() >> 20) + " MiB guest and its 5 %-changed re-snapshot ...");
            Path a = work.resolve("a.raw");
            ImageSynth.generate(a, o.size(), new ImageSynth.Mix(0.4, 0.1, 0.02), 21, 2, b -> {});
            Path b = work.resolve("b.raw");
            ImageSynth.changed(a, b, 20, 22, java.util.Set.of());
            long dataBytes;
            try (RawImage image = RawImage.open(a, null, 2, x -> {})) {
                dataBytes = image.counts().dataBytes();
            }
            S3Location root = S3Location.parse("s3://" + BUCKET + "/bench/");
            double pushGib;
            StorePush.Report re;
            try (Store s = new Store(new StoreClient(server.options()), root, null)) {
                status.accept("pushing ...");
                StorePush.Report first = push(s, a, root.snapshot("a"), null, o.threads());
                pushGib = first.dataBytes() / (first.elapsedMs() / 1000) / (1 << 30);
                status.accept("pushing the re-snapshot against it ...");
                re = push(s, b, root.snapshot("b"), root.snapshot("a"), o.threads());
            }
            List<Pull> pulls = new ArrayList<>();
            for (String client : List.of("apache", "url-connection")) {
                status.accept("pulling with the " + client + " client ...");
                StoreClient.Options opts = server.options().withHttpClient(client);
                double[] store = new double[3];
                double[] plain = new double[3];
                for (int round = 0; round < 3; round++) { // interleaved, medians
                    try (Store s = new Store(new StoreClient(opts), root, null);
                            StoreSource src = StoreSource.open(s, root.snapshot("a"))) {
                        plain[round] = plainDownload(opts, root, src.manifest(), o.threads());
                        // every window read as a pull reads it (fetched, checked, decoded, its pages placed)
                        ThreadLocal<MemorySegment> scratch =
                                ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(src.scratchBytes(), 4096));
                        long t0 = System.nanoTime();
                        Parallel.forEach(
                                o.threads(), "gmem-bench-pull", src.chunks().size(), i -> src.read(i, scratch.get()));
                        store[round] = stored(src.manifest()) / ((System.nanoTime() - t0) / 1e9) / (1 << 30);
                    }
                }
                double st = BenchSupport.median(store);
                double pl = BenchSupport.median(plain);
                pulls.add(new Pull(client, st, pl, st / pl));
            }
            status.accept("chunk reads: uncached, from disk, from memory ...");
            List<Latency> latency = new ArrayList<>();
            Path cacheDir = work.resolve("cache");
            latency.add(reads("uncached (one GET, checked, decoded)", server, root, null, 64));
            reads(
                    "filling the cache",
                    server,
                    root,
                    cacheDir,
                    64); // the same chunks: the next round finds them on disk
            latency.add(reads("from the disk cache (read, checked, decoded)", server, root, cacheDir, 64));
            status.accept("object sizes: a fault's GET against the requests of a restore ...");
            List<ObjectSize> sizes = objectSizes(server, dataBytes, o.threads());
            status.accept("a cold lazy restore ...");
            double manifestMs;
            LazyRestore.Outcome lazy = null;
            Path cold = Files.createDirectories(work.resolve("cold"));
            try (Store s = new Store(new StoreClient(server.options()), root, new ChunkCache(cold, 8L << 30))) {
                long t0 = System.nanoTime();
                try (StoreSource src = StoreSource.open(s, root.snapshot("b"))) {
                    manifestMs = (System.nanoTime() - t0) / 1e6;
                    if (dev.gmem.probe.HostProbe.userfaultfdOfHost().available())
                        lazy = LazyRestore.run(
                                src,
                                GuestMemory.Backend.MEMFD,
                                LazyRestore.Options.defaults(UffdMode.MISSING),
                                new LazyRestore.Checks(0, 0, 0, Duration.ofMinutes(5), Duration.ofMinutes(5)));
                }
            }
            return new Report(
                    o.size(),
                    dataBytes,
                    pushGib,
                    re.dataBytes() / (re.elapsedMs() / 1000) / (1 << 30),
                    re.uploadedFraction(),
                    re.pagesFromBase(),
                    pulls,
                    lazy == null ? Double.NaN : manifestMs + lazy.stats().readyMs(),
                    manifestMs,
                    latency,
                    sizes,
                    lazy == null ? null : lazy.stats().prefetchGibPerS(),
                    lazy == null ? null : lazy.stats().populatedMs());
        } finally {
            OutputFile.removeScratch(work);
        }
    }

    private static StorePush.Report push(Store s, Path raw, S3Location to, S3Location base, int threads)
            throws IOException {
        try (RawImage image = RawImage.open(raw, null, 2, x -> {})) {
            return StorePush.push(s, image, to, base, Codec.LZ4, new LinkedHashMap<>(), threads, x -> {});
        }
    }

    /** The distinct objects a manifest names, and their stored bytes. */
    private static java.util.Map<String, Integer> objects(StoreManifest m) {
        java.util.Map<String, Integer> out = new java.util.HashMap<>();
        for (StoreManifest.StoreChunk c : m.chunks())
            for (StoreManifest.Layer l : c.layers())
                out.put(l.object().hex(), l.object().storedLength());
        return out;
    }

    private static long stored(StoreManifest m) {
        return objects(m).values().stream().mapToLong(Integer::longValue).sum();
    }

    /** The same objects as the snapshot's, each a GET on {@code threads} threads with the same client: the server's limit. */
    private static double plainDownload(StoreClient.Options opts, S3Location root, StoreManifest m, int threads)
            throws IOException {
        try (StoreClient c = new StoreClient(opts)) {
            var objects = new ArrayList<>(objects(m).entrySet());
            AtomicLong bytes = new AtomicLong();
            long t0 = System.nanoTime();
            Parallel.forEach(
                    threads,
                    "gmem-bench-get",
                    objects.size(),
                    i -> bytes.addAndGet(c.get(
                                    root.bucket(),
                                    root.objectKey(objects.get(i).getKey()),
                                    objects.get(i).getValue())
                            .length));
            return bytes.get() / ((System.nanoTime() - t0) / 1e9) / (1 << 30);
        }
    }

    /**
     * For each of {@link #OBJECT_SIZES}: 32 MiB of incompressible objects (32 at least) put on the
     * server, then 32 GETs one at a time as faults make them (each checked by its CRC32C), and all
     * of them with {@code threads} in flight as a pull makes them.
     */
    private static List<ObjectSize> objectSizes(S3Server server, long dataBytes, int threads) throws IOException {
        List<ObjectSize> out = new ArrayList<>();
        try (StoreClient c = new StoreClient(server.options())) {
            Random r = new Random(11);
            for (int size : OBJECT_SIZES) {
                int n = Math.max(32, (32 << 20) / size);
                byte[] bytes = new byte[size];
                int[] crcs = new int[n];
                for (int i = 0; i < n; i++) {
                    r.nextBytes(bytes);
                    crcs[i] = StoreManifest.crc32c(bytes);
                    c.put(BUCKET, "sizes/" + size + "/" + i, bytes);
                }
                Parallel.IndexTask get = i -> {
                    byte[] b = c.get(BUCKET, "sizes/" + size + "/" + i, size);
                    if (StoreManifest.crc32c(b) != crcs[i])
                        throw new IOException("object " + i + " changed on the server");
                };
                get.run(0); // the connection made
                double[] us = new double[32];
                for (int k = 0; k < us.length; k++) {
                    long t0 = System.nanoTime();
                    get.run(r.nextInt(n));
                    us[k] = (System.nanoTime() - t0) / 1e3;
                }
                java.util.Arrays.sort(us);
                long t0 = System.nanoTime();
                Parallel.forEach(threads, "gmem-bench-size", n, get);
                double gib = (double) n * size / ((System.nanoTime() - t0) / 1e9) / (1 << 30);
                out.add(new ObjectSize(size, us[us.length / 2], us[us.length - 1], gib, (dataBytes + size - 1) / size));
            }
        }
        return out;
    }

    /** One data page from each of {@code samples} random chunks, through a new source each round (no memory cache). */
    private static Latency reads(String what, S3Server server, S3Location root, Path cache, int samples)
            throws IOException {
        double[] us = new double[samples];
        try (Store s = new Store(
                        new StoreClient(server.options()),
                        root,
                        cache == null ? null : new ChunkCache(cache, 8L << 30));
                StoreSource src = StoreSource.open(s, root.snapshot("a"));
                Arena arena = Arena.ofConfined()) {
            MemorySegment scratch = arena.allocate(src.scratchBytes(), 4096);
            List<Integer> withData = new ArrayList<>();
            for (int i = 0; i < src.chunks().size(); i++)
                if (src.chunks().get(i).dataPages() > 0) withData.add(i);
            Random r = new Random(7);
            java.util.Collections.shuffle(withData, r);
            for (int k = 0; k < samples; k++) {
                int i = withData.get(k % withData.size());
                Chunk c = src.chunks().get(i);
                int p = 0;
                while (!Chunk.test(c.dataMap(), p)) p++;
                long t0 = System.nanoTime();
                src.readRun(i, p, 1, scratch);
                us[k] = (System.nanoTime() - t0) / 1e3;
            }
        }
        java.util.Arrays.sort(us);
        return new Latency(
                what, samples, us[samples / 2], us[Math.min(samples - 1, (int) Math.ceil(samples * 0.99) - 1)]);
    }
}
