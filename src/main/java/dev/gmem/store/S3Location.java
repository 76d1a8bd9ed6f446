package dev.gmem.store;

/**
 * A place in a store: {@code s3://BUCKET/PREFIX/NAME} names the snapshot NAME of the store under
 * {@code s3://BUCKET/PREFIX/}; {@code s3://BUCKET/PREFIX/} (a trailing slash) names the store
 * itself. The prefix may be empty, or several path segments.
 *
 * @param bucket the bucket
 * @param prefix the store's prefix, without a trailing slash; may be empty
 * @param name the snapshot's name, or null for the store itself
 */
public record S3Location(String bucket, String prefix, String name) {
    public static final String SCHEME = "s3://";

    /** Whether {@code text} is an s3:// URL. */
    public static boolean isS3(String text) {
        return text != null && text.startsWith(SCHEME);
    }

    /** Parses {@code text}; fails with the rule when it is not an s3:// URL of this shape. */
    public static S3Location parse(String text) {
        if (!isS3(text)) throw new IllegalArgumentException("'" + text + "' is not an s3://BUCKET/... URL");
        String rest = text.substring(SCHEME.length());
        int slash = rest.indexOf('/');
        String bucket = slash < 0 ? rest : rest.substring(0, slash);
        if (!bucket.matches("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]"))
            throw new IllegalArgumentException(
                    "'" + text + "': '" + bucket + "' is not a bucket name (3 to 63 of a-z, 0-9, '.' and '-')");
        String path = slash < 0 ? "" : rest.substring(slash + 1);
        if (path.contains("//") || path.startsWith("/"))
            throw new IllegalArgumentException("'" + text + "': empty path segments");
        if (path.isEmpty() || path.endsWith("/")) {
            String prefix = path.isEmpty() ? "" : path.substring(0, path.length() - 1);
            return new S3Location(bucket, prefix, null);
        }
        int last = path.lastIndexOf('/');
        String name = path.substring(last + 1);
        if (!name.matches("[A-Za-z0-9._-]{1,200}") || name.equals(".") || name.equals(".."))
            throw new IllegalArgumentException("'" + text + "': '" + name
                    + "' is not a snapshot name (1 to 200 of A-Z, a-z, 0-9, '.', '_' and '-')");
        return new S3Location(bucket, last < 0 ? "" : path.substring(0, last), name);
    }

    /** The store this snapshot is in. */
    public S3Location store() {
        return new S3Location(bucket, prefix, null);
    }

    /** A snapshot NAME of this store. */
    public S3Location snapshot(String snapshotName) {
        return new S3Location(bucket, prefix, snapshotName);
    }

    private String base() {
        return prefix.isEmpty() ? "" : prefix + "/";
    }

    /** The key of this snapshot's manifest. */
    public String manifestKey() {
        if (name == null) throw new IllegalStateException(this + " names a store, not a snapshot");
        return base() + "snapshots/" + name;
    }

    /** The key prefix of the store's manifests. */
    public String manifestsPrefix() {
        return base() + "snapshots/";
    }

    /** The key prefix of the store's content-addressed objects. */
    public String objectsPrefix() {
        return base() + "chunks/";
    }

    /** The key of the object whose SHA-256 is {@code hex}. */
    public String objectKey(String hex) {
        return objectsPrefix() + hex;
    }

    @Override
    public String toString() {
        return SCHEME + bucket + "/" + base() + (name == null ? "" : name);
    }
}
