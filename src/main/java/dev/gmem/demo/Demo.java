package dev.gmem.demo;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.restore.Destination;
import dev.gmem.restore.EagerRestore;
import dev.gmem.restore.GuestCheck;
import dev.gmem.restore.GuestVerdict;
import dev.gmem.restore.LazyRestore;
import dev.gmem.restore.Strategy;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.ImageSynth;
import dev.gmem.snapshot.RawImage;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;

/**
 * gmem's main job on an embedded default, in one call: synthesize a guest memory image, pack it,
 * restore it eagerly with the baseline and with the chosen strategy on each backend, then lazily
 * in each userfaultfd mode, and prove each restore with a real vCPU where /dev/kvm allows. What
 * the host cannot do is a row that says why.
 */
public final class Demo {
    private static final double GIB = 1024.0 * 1024 * 1024;

    private Demo() {}

    public record Options(long size, Path dir, long seed, long checkStride, Duration guestTimeout) {}

    /**
     * One restore. {@code guestCheck}: "passed", "failed: …" or "skipped: reason"; {@code faults}:
     * faults served (lazy), of which {@code vcpuFaults} during the vCPU's check.
     */
    public record Row(
            String mode,
            String backend,
            String strategy,
            Double ms,
            Double gibPerS,
            Long faults,
            Long vcpuFaults,
            String guestCheck,
            Double guestCheckMs,
            String note) {}

    public record Report(
            long sizeBytes,
            long dataBytes,
            long zeroPages,
            long holePages,
            double synthMs,
            double packMs,
            long snapshotBytes,
            List<Row> rows) {
        public boolean passed() {
            return rows.stream()
                    .noneMatch(r -> r.guestCheck() != null && r.guestCheck().startsWith("failed"));
        }
    }

    /** Steps report what they do to {@code step}, and bytes to the {@code LongConsumer} it returns. */
    public interface Steps {
        LongConsumer step(String name, long totalBytes);
    }

    public static Report run(Options o, Steps steps) throws IOException {
        Files.createDirectories(o.dir());
        Path work = dev.gmem.util.OutputFile.scratchDirectory(
                o.dir(), "gmem-demo-"); // its own: two demos at once never share a file
        Path raw = work.resolve("gmem-demo.mem");
        Path snap = work.resolve("gmem-demo.snap");
        int cpus = Runtime.getRuntime().availableProcessors();
        try {
            long t0 = System.nanoTime();
            ImageSynth.generate(
                    raw,
                    o.size(),
                    new ImageSynth.Mix(0.2, 0.4, 0.1),
                    o.seed(),
                    cpus,
                    steps.step("synthesize image", o.size()));
            double synthMs = ms(t0);
            long t1 = System.nanoTime();
            try (RawImage image = RawImage.open(raw, null, cpus, x -> {})) {
                SnapshotWriter.pack(image, snap, Codec.NONE, new long[0], steps.step("pack snapshot", image.size()));
            }
            double packMs = ms(t1);
            Files.delete(raw);
            List<Row> rows = new ArrayList<>();
            Check kvm = GuestCheck.availability();
            Check gmemfd = check(
                    HostProbe.host().guestMemfd().available(),
                    HostProbe.host().guestMemfd().reason());
            long data;
            long zero;
            long hole;
            try (Snapshot s = Snapshot.open(snap)) {
                data = s.counts().dataBytes();
                zero = s.counts().zeroPages();
                hole = s.counts().holePages();
                for (GuestMemory.Backend b : List.of(GuestMemory.Backend.KERNEL, GuestMemory.Backend.MEMFD)) {
                    if (b == GuestMemory.Backend.KERNEL && !gmemfd.available()) {
                        rows.add(new Row(
                                "eager",
                                b.label(),
                                null,
                                null,
                                null,
                                null,
                                null,
                                null,
                                null,
                                "skipped: " + gmemfd.reason()));
                        continue;
                    }
                    for (boolean baseline : new boolean[] {true, false}) {
                        rows.add(eager(s, b, baseline, kvm, o, steps));
                    }
                }
                for (UffdMode m : UffdMode.values()) rows.add(lazy(s, GuestMemory.Backend.MEMFD, m, kvm, o, steps));
                rows.add(lazy(s, GuestMemory.Backend.KERNEL, UffdMode.MISSING, kvm, o, steps));
            }
            return new Report(o.size(), data, zero, hole, synthMs, packMs, Files.size(snap), rows);
        } finally {
            Files.deleteIfExists(raw);
            Files.deleteIfExists(snap);
            dev.gmem.util.OutputFile.removeScratch(work);
        }
    }

    private static Row eager(Snapshot s, GuestMemory.Backend b, boolean baseline, Check kvm, Options o, Steps steps)
            throws IOException {
        EagerRestore.Options opts = baseline
                ? new EagerRestore.Options(Strategy.MAPPED_COPY, 1, false)
                : EagerRestore.Options.automatic(false);
        String label = "eager " + b.label() + (baseline ? " baseline" : " chosen");
        try (Destination d = Destination.anonymous(b, s)) {
            EagerRestore.Outcome out = EagerRestore.run(
                    s,
                    d,
                    opts,
                    kvm.available() ? o.checkStride() : 0,
                    o.guestTimeout(),
                    steps.step(label, s.counts().dataBytes()),
                    step -> steps.step(label + ": vCPU check", 0));
            EagerRestore.Report r = out.report();
            GuestVerdict v = out.guestCheck();
            return new Row(
                    "eager",
                    b.label(),
                    r.strategy() + " x" + r.threads() + (baseline ? " (baseline)" : ""),
                    r.elapsedMs(),
                    r.gibPerS(),
                    null,
                    null,
                    v == null ? "skipped: " + kvm.reason() : text(v),
                    v == null || v.result() == null ? null : v.result().elapsedMs(),
                    null);
        }
    }

    private static Row lazy(Snapshot s, GuestMemory.Backend b, UffdMode m, Check kvm, Options o, Steps steps)
            throws IOException {
        String strategy = "uffd " + m.label();
        Check uffd = b == GuestMemory.Backend.KERNEL
                ? check(
                        HostProbe.host().guestMemfd().available()
                                && HostProbe.host().guestMemfd().userfaultfd().available(),
                        HostProbe.host().guestMemfd().available()
                                ? HostProbe.host().guestMemfd().userfaultfd().reason()
                                : HostProbe.host().guestMemfd().reason())
                : check(
                        HostProbe.host().userfaultfd().available()
                                && (m == UffdMode.MISSING
                                        || HostProbe.host()
                                                .userfaultfd()
                                                .minorMemfd()
                                                .available()),
                        m == UffdMode.MISSING
                                ? HostProbe.host().userfaultfd().reason()
                                : HostProbe.host().userfaultfd().minorMemfd().reason());
        if (!uffd.available())
            return new Row(
                    "lazy", b.label(), strategy, null, null, null, null, null, null, "skipped: " + uffd.reason());
        String label = "lazy " + b.label() + " " + m.label();
        steps.step(label, 0);
        long t0 = System.nanoTime();
        // the vCPU runs at once, while the prefetcher populates: its own faults go through userfaultfd
        LazyRestore.Checks checks = new LazyRestore.Checks(
                0, 0, kvm.available() ? o.checkStride() : 0, o.guestTimeout(), Duration.ofMinutes(10));
        LazyRestore.Outcome out = LazyRestore.run(s, b, LazyRestore.Options.defaults(m), checks);
        LazyRestore.Stats st = out.stats();
        GuestVerdict v = out.guestCheck();
        double total = st.populatedMs() == null ? ms(t0) : st.populatedMs();
        return new Row(
                "lazy",
                b.label(),
                strategy,
                total,
                s.counts().dataBytes() / GIB / (total / 1000),
                st.faults(),
                v == null ? null : v.vcpuFaults(),
                v == null ? "skipped: " + kvm.reason() : text(v),
                v == null || v.result() == null ? null : v.result().elapsedMs(),
                String.format(java.util.Locale.ROOT, "ready in %.2f ms", st.readyMs()));
    }

    /** "passed (N pages)", "failed: why" or "skipped: why", for the table. */
    private static String text(GuestVerdict v) {
        return switch (v.status()) {
            case "passed" -> "passed (" + v.result().pagesRead() + " pages)";
            default -> v.status() + ": " + v.reason();
        };
    }

    private static Check check(boolean ok, String reason) {
        return ok ? Check.yes(reason) : Check.no(reason);
    }

    private static double ms(long since) {
        return (System.nanoTime() - since) / 1e6;
    }
}
