package dev.gmem.testing;

import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.gmem.probe.HostProbe;
import dev.gmem.probe.HostReport;

/**
 * Assumptions on what this host can do, from the probe. A test that needs a feature the host lacks
 * is skipped with the probe's reason as its message ({@link SkipReporter} prints it).
 */
public final class Host {
    private Host() {}

    public static HostReport report() {
        return HostProbe.host();
    }

    public static void assumeKvm() {
        assumeTrue(
                report().kvm().available(),
                () -> "needs /dev/kvm: " + report().kvm().reason());
    }

    public static void assumeGuestMemfd() {
        assumeKvm();
        assumeTrue(
                report().guestMemfd().available(),
                () -> "needs guest_memfd: " + report().guestMemfd().reason());
    }

    public static void assumeUserfaultfd() {
        assumeTrue(
                report().userfaultfd().available(),
                () -> "needs userfaultfd: " + report().userfaultfd().reason());
    }

    public static void assumeMinorOnMemfd() {
        assumeUserfaultfd();
        assumeTrue(
                report().userfaultfd().minorMemfd().available(),
                () -> "needs MINOR faults on memfd: "
                        + report().userfaultfd().minorMemfd().reason());
    }

    public static boolean hasUserfaultfd() {
        return report().userfaultfd().available();
    }

    /** Whether this process runs as root (uid 0), as the tests that mount, mknod or change user need. */
    public static boolean isRoot() {
        try {
            return "0"
                    .equals(String.valueOf(
                            java.nio.file.Files.getAttribute(java.nio.file.Path.of("/proc/self"), "unix:uid")));
        } catch (java.io.IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    /** Deletes {@code dir} and everything under it, never following a link out of it; a missing tree is fine. */
    public static void removeTree(java.nio.file.Path dir) throws java.io.IOException {
        if (!java.nio.file.Files.exists(dir, java.nio.file.LinkOption.NOFOLLOW_LINKS)) return;
        try (var walk = java.nio.file.Files.walk(dir)) {
            for (java.nio.file.Path p :
                    walk.sorted(java.util.Comparator.reverseOrder()).toList()) java.nio.file.Files.deleteIfExists(p);
        }
    }
}
