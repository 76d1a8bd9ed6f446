package dev.gmem.store;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Removes the objects of a store that no snapshot names. Safe against a concurrent push: the
 * objects are listed first, the manifests read after, and only an unnamed object older than the
 * grace ({@link #GRACE} unless told) is removed. An object a push uploads is new; one it reuses it
 * rewrites onto itself when older than {@link #TOUCH_AFTER}, half the grace; and its manifest
 * comes last. So an object a push relies on is never old enough, unless the push takes longer than
 * the grace's other half.
 */
public final class StoreGc {
    public static final Duration GRACE = Duration.ofHours(1);
    public static final Duration TOUCH_AFTER = GRACE.dividedBy(2);

    private StoreGc() {}

    public record Report(
            int snapshots, long objects, long referenced, long removed, long removedBytes, long youngKept) {}

    public static Report run(Store store, Duration grace, boolean dryRun) throws StoreException {
        if (grace.compareTo(TOUCH_AFTER) < 0 && !grace.isZero())
            throw new IllegalArgumentException(
                    "a grace under " + TOUCH_AFTER.toMinutes() + " minutes would not protect a concurrent push");
        S3Location root = store.root();
        List<StoreClient.ObjectInfo> objects = store.client().list(root.bucket(), root.objectsPrefix());
        Instant now = Instant.now();
        Set<String> named = new HashSet<>();
        List<StoreClient.ObjectInfo> manifests = store.snapshots();
        for (StoreClient.ObjectInfo m : manifests) {
            String name = m.key().substring(root.manifestsPrefix().length());
            named.addAll(store.manifest(root.snapshot(name)).objects());
        }
        List<String> doomed = new ArrayList<>();
        long bytes = 0;
        long young = 0;
        for (StoreClient.ObjectInfo o : objects) {
            String hex = o.key().substring(root.objectsPrefix().length());
            if (named.contains(hex)) continue;
            if (Duration.between(o.lastModified(), now).compareTo(grace) < 0) {
                young++;
                continue;
            }
            doomed.add(o.key());
            bytes += o.size();
        }
        if (!dryRun) store.client().delete(root.bucket(), doomed);
        return new Report(
                manifests.size(), objects.size(), objects.size() - doomed.size() - young, doomed.size(), bytes, young);
    }
}
