package dev.gmem.cli;

import dev.gmem.store.ChunkCache;
import dev.gmem.store.S3Location;
import dev.gmem.store.Store;
import dev.gmem.store.StoreClient;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * The options of every command that takes {@code s3://}: the server, and the local chunk cache.
 * Credentials come from the AWS SDK's standard chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
 * a profile, an instance role); the region from AWS_REGION (default us-east-1).
 */
final class StoreOptions {
    @Option(
            names = "--endpoint",
            paramLabel = "URL",
            description = "The S3 server, for one that is not AWS (MinIO, Ceph RGW, Garage, S3Proxy): path-style"
                    + " addressing is then used. Default: AWS_ENDPOINT_URL, else AWS's.")
    String endpoint;

    @Option(
            names = "--cache-dir",
            paramLabel = "DIR",
            description = "The local chunk cache, shared by every process of the host (default: ~/.cache/gmem/store).")
    Path cacheDir;

    @Option(
            names = "--cache-size",
            converter = Sizes.class,
            defaultValue = "8G",
            description = "The cache's bound; the least recently used objects go first (default ${DEFAULT-VALUE}).")
    long cacheSize;

    @Option(names = "--no-cache", description = "Fetch every object from the store; keep none on local disk.")
    boolean noCache;

    /** The store {@code location} is in. */
    Store open(CommandLine cl, S3Location location) throws IOException {
        String e = endpoint != null ? endpoint : System.getenv("AWS_ENDPOINT_URL");
        URI uri = null;
        if (e != null && !e.isEmpty()) {
            try {
                uri = URI.create(e);
            } catch (IllegalArgumentException x) {
                throw new CommandLine.ParameterException(cl, "--endpoint: '" + e + "' is not a URL");
            }
            if (uri.getScheme() == null
                    || !(uri.getScheme().equals("http") || uri.getScheme().equals("https")))
                throw new CommandLine.ParameterException(
                        cl, "--endpoint: '" + e + "' is not an http:// or https:// URL");
        }
        ChunkCache cache =
                noCache ? null : new ChunkCache(cacheDir != null ? cacheDir : ChunkCache.defaultDir(), cacheSize);
        return new Store(new StoreClient(StoreClient.Options.of(uri)), location, cache);
    }

    /**
     * The source {@code argument} names: a snapshot in a store when it is an s3:// URL (the
     * source then owns its store), else the local file {@code local} opens.
     */
    dev.gmem.snapshot.PageSource openSource(CommandLine cl, String argument, LocalOpener local) throws IOException {
        if (!S3Location.isS3(argument)) return local.open(Path.of(argument));
        S3Location at = parse(cl, argument, argument);
        if (at.name() == null)
            throw new CommandLine.ParameterException(cl, argument + " names a store, not a snapshot");
        return dev.gmem.store.StoreSource.openOwning(open(cl, at), at);
    }

    /** Opens a local memory file. */
    @FunctionalInterface
    interface LocalOpener {
        dev.gmem.snapshot.PageSource open(Path path) throws IOException;
    }

    /** {@code text} as a store's s3://BUCKET/PREFIX/ (the trailing slash may be left out), or a usage error. */
    static S3Location parseStore(CommandLine cl, String text) {
        return parse(cl, "the store", text.endsWith("/") ? text : text + "/");
    }

    /** {@code text} as an s3:// location, or a usage error naming {@code what}. */
    static S3Location parse(CommandLine cl, String what, String text) {
        try {
            return S3Location.parse(text);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.ParameterException(cl, what + ": " + e.getMessage());
        }
    }
}
