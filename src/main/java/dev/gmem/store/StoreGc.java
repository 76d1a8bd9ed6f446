package dev.gmem.store;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

/**
 * Removes the objects of a store that no snapshot names. Safe against a concurrent push: the
 * objects are listed first and the manifests read after; an unnamed object is removed only when
 * it is older than the grace ({@link #GRACE} unless told, at least twice {@link #TOUCH_AFTER}),
 * and its age is asked again just before it goes. A push uploads new objects, rewrites each object
 * it reuses that is older than {@link #TOUCH_AFTER} onto itself (which makes it new), and writes
 * its manifest last. So an object a push relies on is young when gc looks, as long as the push
 * takes less than the grace minus {@link #TOUCH_AFTER}; what remains is the instant between gc's
 * last look at an object and its delete.
 *
 * <p>A reader that has a manifest open (a lazy restore, a handler) is not protected: gc removes
 * the objects of a snapshot that was removed or pushed again under its name meanwhile.
 */
public final class StoreGc {
    public static final Duration GRACE = Duration.ofHours(1);
    public static final Duration TOUCH_AFTER = GRACE.dividedBy(2);

    private StoreGc() {}

    public record Report(
            int snapshots, long objects, long referenced, long removed, long removedBytes, long youngKept) {}

    public static Report run(Store store, Duration grace, boolean dryRun) throws StoreException {
        if (grace.compareTo(TOUCH_AFTER.multipliedBy(2)) < 0 && !grace.isZero())
            throw new IllegalArgumentException(
                    "a grace under " + TOUCH_AFTER.multipliedBy(2).toMinutes()
                            + " minutes would not protect a concurrent push (0: nothing pushes meanwhile)");
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
            // asked again: a push may have made it new since the listing
            Instant now2 = store.client().lastModified(root.bucket(), o.key());
            if (now2 == null) continue;
            if (!grace.isZero() && Duration.between(now2, Instant.now()).compareTo(grace) < 0) {
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
