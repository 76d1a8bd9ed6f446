package dev.gmem.restore;

import dev.gmem.kvm.GuestException;
import dev.gmem.probe.Check;
import java.io.IOException;
import java.util.Locale;
import java.util.function.LongSupplier;

/**
 * The outcome of a guest check: {@code status} passed, failed or skipped, with the reason (skipped:
 * why this host cannot run it; failed: what the vCPU saw) or the result, and for a lazy restore the
 * vCPU's faults that the fault engine served.
 */
public record GuestVerdict(String status, String reason, GuestCheck.Result result, Long vcpuFaults) {
    /** One guest check to run. */
    @FunctionalInterface
    public interface Run {
        GuestCheck.Result run() throws IOException;
    }

    /** Runs {@code run} where this host has KVM, counting the engine's faults during it when {@code faults} is given. */
    public static GuestVerdict of(Run run, LongSupplier faults) throws IOException {
        Check kvm = GuestCheck.availability();
        if (!kvm.available()) return new GuestVerdict("skipped", kvm.reason(), null, null);
        long before = faults == null ? 0 : faults.getAsLong();
        try {
            GuestCheck.Result r = run.run();
            return new GuestVerdict("passed", null, r, faults == null ? null : faults.getAsLong() - before);
        } catch (GuestException e) {
            return new GuestVerdict("failed", e.getMessage(), null, null);
        }
    }

    public boolean failed() {
        return "failed".equals(status);
    }

    /** One line for a person. */
    public String line() {
        return switch (status) {
            case "passed" ->
                String.format(
                        Locale.ROOT,
                        "guest check passed: a vCPU read %d pages (%d instructions) in %.0f ms and its checksums match%s",
                        result.pagesRead(),
                        result.instructions(),
                        result.elapsedMs(),
                        vcpuFaults == null ? "" : "; " + vcpuFaults + " of its faults were served by the fault engine");
            case "skipped" -> "guest check skipped: " + reason;
            default -> "guest check FAILED: " + reason;
        };
    }
}
