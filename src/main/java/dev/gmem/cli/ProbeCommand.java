package dev.gmem.cli;

import dev.gmem.probe.Check;
import dev.gmem.probe.HostProbe;
import dev.gmem.probe.HostReport;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import java.util.stream.Collectors;
import picocli.CommandLine;
import picocli.CommandLine.Command;

@Command(
        name = "probe",
        header = "Report what this host can do for guest memory, each answer found by trying it.",
        mixinStandardHelpOptions = true,
        description = {
            "Report what this host can do for guest memory, each answer found by trying it:",
            "KVM and guest_memfd (with its flags), write() population into guest_memfd, in-place",
            "shared/private conversion, userfaultfd on guest_memfd and on memfd (MISSING and MINOR),",
            "and huge pages. Every \"no\" says why. Always exits 0 once it has printed its report."
        })
final class ProbeCommand implements Callable<Integer> {
    @CommandLine.Mixin
    Options.Json json;

    @CommandLine.Spec
    CommandLine.Model.CommandSpec spec;

    @Override
    public Integer call() {
        HostReport r = new HostProbe().run();
        PrintWriter out = spec.commandLine().getOut();
        if (json.on) {
            out.println(Json.write(r));
        } else {
            print(out, r);
        }
        out.flush();
        return 0;
    }

    private static void print(PrintWriter out, HostReport r) {
        HostReport.Kernel k = r.kernel();
        out.printf("kernel %s (%s), %d-byte pages, %d CPUs%n%n", k.release(), k.machine(), k.pageSize(), k.cpus());
        line(out, 0, "KVM", new Check(r.kvm().available(), r.kvm().reason()));
        HostReport.GuestMemfd g = r.guestMemfd();
        line(
                out,
                0,
                "guest_memfd",
                new Check(
                        g.available(),
                        g.available()
                                ? "flags " + String.join(", ", g.flags()) + " (cap 244 = 0x"
                                        + Long.toHexString(g.flagsMask()) + ")"
                                : g.reason()));
        line(out, 1, "write() population", g.write());
        line(out, 1, "in-place conversion", g.conversion());
        line(out, 1, "userfaultfd", g.userfaultfd());
        HostReport.Userfaultfd u = r.userfaultfd();
        line(
                out,
                0,
                "userfaultfd",
                new Check(
                        u.available(),
                        u.available()
                                ? "via " + u.via() + "; features " + String.join(" ", u.features())
                                : u.reason()));
        line(out, 1, "MISSING on memfd", u.missingMemfd());
        line(out, 1, "MINOR on memfd", u.minorMemfd());
        HostReport.HugePages h = r.hugePages();
        line(out, 0, "THP for shmem", h.thpShmem());
        String pools = h.hugetlb().isEmpty()
                ? "no hugetlb pools"
                : h.hugetlb().stream()
                        .map(p -> p.pageSizeKib() + " KiB: " + p.total() + " pages, " + p.free() + " free")
                        .collect(Collectors.joining("; "));
        boolean anyFree = h.hugetlb().stream().anyMatch(p -> p.free() > 0);
        line(
                out,
                0,
                "hugetlb pages",
                new Check(
                        anyFree,
                        pools + (anyFree ? "" : " (an administrator can reserve some in /proc/sys/vm/nr_hugepages)")));
    }

    private static void line(PrintWriter out, int depth, String what, Check c) {
        String label = "  ".repeat(depth) + what;
        out.printf("%-24s %-4s %s%n", label, c.available() ? "yes" : "no", c.reason());
    }
}
