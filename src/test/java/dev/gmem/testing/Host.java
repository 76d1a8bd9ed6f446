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
        assumeTrue(report().kvm().available(), () -> "needs /dev/kvm: " + report().kvm().reason());
    }

    public static void assumeGuestMemfd() {
        assumeKvm();
        assumeTrue(report().guestMemfd().available(), () -> "needs guest_memfd: " + report().guestMemfd().reason());
    }

    public static void assumeUserfaultfd() {
        assumeTrue(report().userfaultfd().available(), () -> "needs userfaultfd: " + report().userfaultfd().reason());
    }

    public static void assumeMinorOnMemfd() {
        assumeUserfaultfd();
        assumeTrue(report().userfaultfd().minorMemfd().available(), () -> "needs MINOR faults on memfd: " + report().userfaultfd().minorMemfd().reason());
    }
}
