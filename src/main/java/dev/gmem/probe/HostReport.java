package dev.gmem.probe;

import java.util.List;

/**
 * What this host can do for guest memory, as {@link HostProbe} found it. Serialised as the JSON of
 * {@code gmem probe --json}; field names (in snake_case) are a stable interface, documented in docs/probe.md.
 */
public record HostReport(Kernel kernel, Kvm kvm, GuestMemfd guestMemfd, Userfaultfd userfaultfd, HugePages hugePages) {

    public record Kernel(String release, String machine, long pageSize, int cpus) {}

    /** /dev/kvm: whether it opens, and the API version. */
    public record Kvm(boolean available, String reason, String device, int apiVersion) {}

    /**
     * guest_memfd: whether a default VM can create one (cap 234 and a real creation), the flag mask
     * of cap 244 at system and VM scope decoded by name, and the three newer features.
     */
    public record GuestMemfd(
            boolean available,
            String reason,
            long flagsMask,
            List<String> flags,
            List<Integer> unknownFlagBits,
            long vmFlagsMask,
            Check write,
            Check conversion,
            Check userfaultfd) {}

    /** userfaultfd: how it was obtained, the features UFFDIO_API offers, and MISSING and MINOR on memfd. */
    public record Userfaultfd(
            boolean available,
            String reason,
            String via,
            long featuresMask,
            List<String> features,
            Check missingMemfd,
            Check minorMemfd) {}

    /** Transparent huge pages for shmem and the hugetlb pools. */
    public record HugePages(Check thpShmem, String thpShmemMode, List<HugetlbPool> hugetlb) {}

    public record HugetlbPool(long pageSizeKib, long total, long free) {}
}
