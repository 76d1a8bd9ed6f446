package dev.gmem.store;

import java.net.URI;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkException;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.http.SdkHttpClient;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.http.urlconnection.UrlConnectionHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.CompletedPart;
import software.amazon.awssdk.services.s3.model.Delete;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;
import software.amazon.awssdk.services.s3.model.ListObjectsV2Request;
import software.amazon.awssdk.services.s3.model.MetadataDirective;
import software.amazon.awssdk.services.s3.model.NoSuchBucketException;
import software.amazon.awssdk.services.s3.model.NoSuchKeyException;
import software.amazon.awssdk.services.s3.model.ObjectIdentifier;
import software.amazon.awssdk.services.s3.model.S3Exception;
import software.amazon.awssdk.services.s3.model.S3Object;

/**
 * gmem's S3 client: the AWS SDK for Java v2 with its URL-connection HTTP client (as fast as the
 * Apache one here, and the one that survives a reset of every connection: see docs/store.md), with
 * the standard credential chain unless told
 * otherwise, an endpoint and path-style addressing for servers that are not AWS, the SDK's standard
 * retries (exponential back-off with jitter, 6 attempts) and a time-out on every request. Errors
 * come back as {@link StoreException}s naming the object, in one line. Thread-safe.
 */
public final class StoreClient implements AutoCloseable {
    /** Objects above this go up in parts. */
    static final long MULTIPART_ABOVE = 64L << 20;

    static final long PART_BYTES = 16L << 20;

    /** Attempts of a request: the SDK's standard retries, exponential back-off with jitter between them. */
    static final int ATTEMPTS = 6;

    /**
     * @param endpoint the server (null: AWS's, for the region)
     * @param pathStyle bucket in the path rather than the host name, as most servers that are not AWS need
     * @param region the signing region
     * @param credentials null for the standard chain (environment, profile, instance role)
     * @param httpClient "apache" or "url-connection"
     * @param attemptTimeout one attempt's limit
     * @param callTimeout a request's limit, its retries included
     */
    public record Options(
            URI endpoint,
            boolean pathStyle,
            String region,
            AwsCredentialsProvider credentials,
            String httpClient,
            Duration attemptTimeout,
            Duration callTimeout) {
        /** The defaults, with {@code endpoint} (may be null) and path-style when it is set. */
        public static Options of(URI endpoint) {
            String region = System.getenv()
                    .getOrDefault("AWS_REGION", System.getenv().getOrDefault("AWS_DEFAULT_REGION", "us-east-1"));
            return new Options(
                    endpoint,
                    endpoint != null,
                    region,
                    null,
                    "url-connection",
                    Duration.ofSeconds(15),
                    Duration.ofSeconds(60));
        }

        public Options withCredentials(AwsCredentialsProvider c) {
            return new Options(endpoint, pathStyle, region, c, httpClient, attemptTimeout, callTimeout);
        }

        public Options withHttpClient(String client) {
            return new Options(endpoint, pathStyle, region, credentials, client, attemptTimeout, callTimeout);
        }
    }

    /** An object a listing found. */
    public record ObjectInfo(String key, long size, Instant lastModified) {}

    private final S3Client s3;
    private final Options options;
    /** The SDK does not close an HTTP client it was given: this does. */
    private final SdkHttpClient http;
    /** Set once the server refused a DeleteObjects (S3Proxy does, for the checksum the SDK sends): one DELETE per key then. */
    private volatile boolean singleDeletes;

    public StoreClient(Options options) {
        this.options = options;
        SdkHttpClient http = switch (options.httpClient()) {
            case "apache" ->
                Apache5HttpClient.builder()
                        .maxConnections(64)
                        .connectionTimeout(Duration.ofSeconds(5))
                        .socketTimeout(options.attemptTimeout())
                        .build();
            case "url-connection" ->
                UrlConnectionHttpClient.builder()
                        .connectionTimeout(Duration.ofSeconds(5))
                        .socketTimeout(options.attemptTimeout())
                        .build();
            default ->
                throw new IllegalArgumentException(
                        "HTTP client '" + options.httpClient() + "': apache or url-connection");
        };
        var b = S3Client.builder()
                .httpClient(http)
                .region(Region.of(options.region()))
                .credentialsProvider(
                        options.credentials() != null
                                ? options.credentials()
                                : DefaultCredentialsProvider.builder().build())
                .forcePathStyle(options.pathStyle())
                // the SDK's default trailing checksums are AWS's alone (S3Proxy, Ceph, older MinIO refuse them); gmem
                // checks
                // every object's SHA-256 itself
                .requestChecksumCalculation(
                        software.amazon.awssdk.core.checksums.RequestChecksumCalculation.WHEN_REQUIRED)
                .responseChecksumValidation(
                        software.amazon.awssdk.core.checksums.ResponseChecksumValidation.WHEN_REQUIRED)
                .overrideConfiguration(o -> o.retryStrategy(r -> r.maxAttempts(ATTEMPTS))
                        .apiCallAttemptTimeout(options.attemptTimeout())
                        .apiCallTimeout(options.callTimeout()));
        if (options.endpoint() != null) b.endpointOverride(options.endpoint());
        this.s3 = b.build();
        this.http = http;
    }

    public Options options() {
        return options;
    }

    private static String url(String bucket, String key) {
        return S3Location.SCHEME + bucket + "/" + key;
    }

    /** The failure of a request on {@code bucket}/{@code key} as one line. */
    private StoreException failure(String what, String bucket, String key, SdkException e) {
        String where = url(bucket, key);
        return switch (e) {
            case NoSuchKeyException x -> new StoreException(where + ": no such object", e);
            case NoSuchBucketException x -> new StoreException(where + ": no such bucket '" + bucket + "'", e);
            case S3Exception x
            when x.statusCode() == 403 ->
                new StoreException(
                        where + ": access denied (" + x.awsErrorDetails().errorCode() + "): check the credentials", e);
            case S3Exception x when x.statusCode() == 404 -> new StoreException(where + ": no such object", e);
            case S3Exception x ->
                new StoreException(
                        where + ": " + what + " failed with HTTP " + x.statusCode() + " ("
                                + (x.awsErrorDetails() == null
                                        ? "?"
                                        : x.awsErrorDetails().errorCode()) + ")",
                        e);
            case SdkClientException x ->
                new StoreException(
                        where + ": " + what + " failed: " + firstLine(x.getMessage())
                                + (options.endpoint() != null ? " (server " + options.endpoint() + ")" : ""),
                        e);
            default -> new StoreException(where + ": " + what + " failed: " + firstLine(e.getMessage()), e);
        };
    }

    private static String firstLine(String s) {
        if (s == null) return "?";
        int nl = s.indexOf('\n');
        return nl < 0 ? s : s.substring(0, nl);
    }

    /** The whole object, of {@value #MAX_GET_BYTES} bytes at most. */
    public byte[] get(String bucket, String key) throws StoreException {
        return get(bucket, key, MAX_GET_BYTES);
    }

    /** The most bytes one GET reads into memory. */
    static final int MAX_GET_BYTES = 1 << 30;

    /**
     * The whole object, read straight from the response into an array of its length (no buffer
     * that grows, no copy). An object longer than {@code limit} bytes is refused unread, as
     * damaged; a body cut short is retried like any failed request.
     */
    public byte[] get(String bucket, String key, int limit) throws StoreException {
        try {
            return s3.getObject(r -> r.bucket(bucket).key(key), (response, in) -> {
                Long announced = response.contentLength();
                if (announced != null && announced > limit) throw new TooLong(announced);
                try {
                    byte[] bytes = in.readNBytes(announced != null ? announced.intValue() : limit + 1);
                    if (announced == null && bytes.length > limit) throw new TooLong(bytes.length);
                    if (announced != null && bytes.length < announced)
                        throw new java.io.EOFException(
                                "the body ended after " + bytes.length + " of its " + announced + " bytes");
                    return bytes;
                } catch (java.io.IOException e) {
                    // as the SDK's own whole-object read does: a body that breaks off is worth another attempt
                    throw software.amazon.awssdk.core.exception.RetryableException.builder()
                            .message("reading the body failed: " + e.getMessage())
                            .cause(e)
                            .build();
                }
            });
        } catch (SdkException e) {
            for (Throwable t = e; t != null; t = t.getCause()) { // the SDK wraps what the reader threw
                if (t instanceof TooLong l)
                    throw new StoreFormatException(url(bucket, key) + ": " + l.length + " bytes, more than the " + limit
                            + " expected: damaged in the store");
            }
            throw failure("GET", bucket, key, e);
        }
    }

    /** An object longer than its reader allows: refused without reading it, and not retried. */
    private static final class TooLong extends RuntimeException {
        private static final long serialVersionUID = 1L;
        final long length;

        TooLong(long length) {
            super(null, null, false, false);
            this.length = length;
        }
    }

    /** When the object was last written, or null when there is none. */
    public Instant lastModified(String bucket, String key) throws StoreException {
        try {
            HeadObjectResponse h = s3.headObject(r -> r.bucket(bucket).key(key));
            return h.lastModified();
        } catch (NoSuchKeyException e) {
            return null;
        } catch (S3Exception e) {
            if (e.statusCode() == 404) return null;
            throw failure("HEAD", bucket, key, e);
        } catch (SdkException e) {
            throw failure("HEAD", bucket, key, e);
        }
    }

    /** Writes the object, in parts when it is large. */
    public void put(String bucket, String key, byte[] bytes) throws StoreException {
        try {
            if (bytes.length <= MULTIPART_ABOVE) {
                s3.putObject(r -> r.bucket(bucket).key(key), RequestBody.fromBytes(bytes));
                return;
            }
            String upload =
                    s3.createMultipartUpload(r -> r.bucket(bucket).key(key)).uploadId();
            try {
                List<CompletedPart> parts = new ArrayList<>();
                for (int n = 1, at = 0; at < bytes.length; n++, at += (int) PART_BYTES) {
                    int len = (int) Math.min(PART_BYTES, bytes.length - at);
                    int part = n;
                    String etag = s3.uploadPart(
                                    r -> r.bucket(bucket)
                                            .key(key)
                                            .uploadId(upload)
                                            .partNumber(part),
                                    RequestBody.fromBytes(java.util.Arrays.copyOfRange(bytes, at, at + len)))
                            .eTag();
                    parts.add(CompletedPart.builder().partNumber(n).eTag(etag).build());
                }
                s3.completeMultipartUpload(
                        r -> r.bucket(bucket).key(key).uploadId(upload).multipartUpload(m -> m.parts(parts)));
            } catch (SdkException e) {
                try {
                    s3.abortMultipartUpload(r -> r.bucket(bucket).key(key).uploadId(upload));
                } catch (SdkException x) {
                    e.addSuppressed(x);
                }
                throw e;
            }
        } catch (SdkException e) {
            throw failure("PUT", bucket, key, e);
        }
    }

    /** Rewrites the object onto itself, which makes it new: how a push keeps an object it reuses out of reach of gc. */
    public void touch(String bucket, String key) throws StoreException {
        try {
            s3.copyObject(r -> r.sourceBucket(bucket)
                    .sourceKey(key)
                    .destinationBucket(bucket)
                    .destinationKey(key)
                    .metadataDirective(MetadataDirective.REPLACE));
        } catch (SdkException e) {
            throw failure("COPY", bucket, key, e);
        }
    }

    /** Every object right under {@code prefix} (not in its subfolders). */
    public List<ObjectInfo> list(String bucket, String prefix) throws StoreException {
        List<ObjectInfo> out = new ArrayList<>();
        try {
            for (S3Object o : s3.listObjectsV2Paginator(ListObjectsV2Request.builder()
                            .bucket(bucket)
                            .prefix(prefix)
                            .delimiter("/")
                            .build())
                    .contents()) {
                out.add(new ObjectInfo(o.key(), o.size(), o.lastModified()));
            }
        } catch (SdkException e) {
            throw failure("LIST", bucket, prefix, e);
        }
        return out;
    }

    /** Deletes {@code keys}, a thousand per request where the server takes that, else one by one. */
    public void delete(String bucket, List<String> keys) throws StoreException {
        for (int at = 0; at < keys.size(); at += 1000) {
            if (singleDeletes) {
                for (String k : keys.subList(at, Math.min(keys.size(), at + 1000))) {
                    try {
                        s3.deleteObject(r -> r.bucket(bucket).key(k));
                    } catch (SdkException e) {
                        throw failure("DELETE", bucket, k, e);
                    }
                }
                continue;
            }
            List<ObjectIdentifier> batch = keys.subList(at, Math.min(keys.size(), at + 1000)).stream()
                    .map(k -> ObjectIdentifier.builder().key(k).build())
                    .toList();
            try {
                var r = s3.deleteObjects(d -> d.bucket(bucket)
                        .delete(Delete.builder().objects(batch).quiet(true).build()));
                if (r.hasErrors() && !r.errors().isEmpty())
                    throw new StoreException(url(bucket, r.errors().getFirst().key()) + ": DELETE failed ("
                            + r.errors().getFirst().code() + ")");
            } catch (S3Exception e) {
                if (e.statusCode() != 501)
                    throw failure("DELETE", bucket, batch.getFirst().key(), e);
                singleDeletes = true;
                at -= 1000; // this batch again, one by one
            } catch (SdkException e) {
                throw failure("DELETE", bucket, batch.getFirst().key(), e);
            }
        }
    }

    /** Creates {@code bucket}, for tests and benchmarks against a server of their own. */
    public void createBucket(String bucket) throws StoreException {
        try {
            s3.createBucket(r -> r.bucket(bucket));
        } catch (SdkException e) {
            throw failure("CREATE BUCKET", bucket, "", e);
        }
    }

    @Override
    public void close() {
        s3.close();
        http.close();
    }
}
