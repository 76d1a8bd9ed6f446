package dev.gmem.restore;

import dev.gmem.kvm.ChecksumGuest;
import dev.gmem.kvm.GuestException;
import dev.gmem.kvm.GuestProgram;
import dev.gmem.kvm.Kvm;
import dev.gmem.kvm.KvmAbi;
import dev.gmem.kvm.Vm;
import dev.gmem.memory.GuestMemory;
import dev.gmem.memory.KernelGuestMemory;
import dev.gmem.probe.HostProbe;
import dev.gmem.snapshot.ChunkReader;
import dev.gmem.snapshot.PageIndex;
import dev.gmem.snapshot.PageKind;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.Region;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * The guest-side proof: a real KVM vCPU reads one word per page of restored guest memory
 * ({@link ChecksumGuest}) and its checksum is compared with the one computed from the source.
 *
 * <p>Memslots: on the kernel backend, the guest memory's own VM gets one
 * KVM_SET_USER_MEMORY_REGION2 slot per region with KVM_MEM_GUEST_MEMFD, backed by the
 * guest_memfd at the region's offset, with {@code userspace_addr} at a mapping of the same file
 * (spec rule 53). On memfd, a new VM gets plain slots at {@code view} (the guest view, or a lazy
 * restore's registered mapping, so that the vCPU's own faults are served by the fault engine).
 * On a mismatch, the guest bisects to the first differing page.
 */
public final class GuestCheck {
    private GuestCheck() {}

    /** One region's outcome. */
    public record RegionResult(long guestAddress, long pagesRead, long expected, long actual) {}

    public record Result(
            String backend,
            long pagesRead,
            long instructions,
            double elapsedMs,
            long exits,
            List<RegionResult> regions) {}

    /** Whether this host can run the check, and if not why (no /dev/kvm, no permission). */
    public static dev.gmem.probe.Check availability() {
        var k = HostProbe.host().kvm();
        return k.available() ? dev.gmem.probe.Check.yes(k.reason()) : dev.gmem.probe.Check.no(k.reason());
    }

    /**
     * Runs the check over {@code memory} laid out as {@code source}'s regions, reading one page in
     * {@code stridePages}, with {@code view} as the memslots' host address (null: the guest view).
     *
     * @throws GuestException when the checksums differ (naming the first differing page), or the guest fails
     */
    public static Result run(
            PageSource source, GuestMemory memory, MemorySegment view, long stridePages, Duration timeout)
            throws IOException {
        if (stridePages < 1) throw new IllegalArgumentException("the stride is at least one page");
        List<Region> regions = source.regions();
        long end = 0;
        for (Region r : regions) end = Math.max(end, r.guestEnd());
        long reservedAt = ChecksumGuest.reservedAddressAbove(end);
        boolean kernel = memory instanceof KernelGuestMemory;
        MemorySegment host = view != null ? view : memory.guestView();
        long t0 = System.nanoTime();
        Kvm kvm = kernel ? null : Kvm.open();
        Vm vm = null;
        List<Integer> slots = new ArrayList<>();
        try {
            vm = kernel ? ((KernelGuestMemory) memory).vm() : kvm.createVm(KvmAbi.VM_TYPE_DEFAULT);
            for (int i = 0; i < regions.size(); i++) {
                Region r = regions.get(i);
                long uaddr = host.address() + r.fileOffset();
                if (kernel) {
                    vm.setUserMemoryRegion2(
                            i,
                            KvmAbi.KVM_MEM_GUEST_MEMFD,
                            r.guestAddress(),
                            r.size(),
                            uaddr,
                            ((KernelGuestMemory) memory).guestMemfd(),
                            r.fileOffset());
                } else {
                    vm.setUserMemoryRegion(i, 0, r.guestAddress(), r.size(), uaddr);
                }
                slots.add(i);
            }
            List<RegionResult> out = new ArrayList<>();
            long pages = 0;
            long exits;
            try (ChecksumGuest guest = ChecksumGuest.create(vm, regions.size(), reservedAt);
                    Expected expected = new Expected(source)) {
                for (Region r : regions) {
                    long stride = stridePages * r.pageSize();
                    long steps = (r.size() + stride - 1) / stride;
                    long want = expected.fold(r, 0, steps, stride);
                    long got = guest.checksum(r.guestAddress(), steps, stride, timeout);
                    if (got != want) throw mismatch(guest, expected, r, steps, stride, want, got, timeout);
                    out.add(new RegionResult(r.guestAddress(), steps, want, got));
                    pages += steps;
                }
                exits = guest.exits();
            }
            return new Result(
                    memory.backend().label(),
                    pages,
                    pages * GuestProgram.INSTRUCTIONS_PER_STEP,
                    (System.nanoTime() - t0) / 1e6,
                    exits,
                    out);
        } finally {
            if (vm != null) {
                for (int i : slots) {
                    Region r = regions.get(i);
                    try {
                        if (kernel)
                            vm.setUserMemoryRegion2(
                                    i,
                                    KvmAbi.KVM_MEM_GUEST_MEMFD,
                                    r.guestAddress(),
                                    0,
                                    host.address() + r.fileOffset(),
                                    ((KernelGuestMemory) memory).guestMemfd(),
                                    r.fileOffset());
                        else vm.setUserMemoryRegion(i, 0, r.guestAddress(), 0, host.address() + r.fileOffset());
                    } catch (IOException ignored) {
                        // the VM goes away with its file, or below
                    }
                }
                if (!kernel) vm.close();
            }
            if (kvm != null) kvm.close();
        }
    }

    /** Bisects with the guest to the first page whose word differs, and names it. */
    private static GuestException mismatch(
            ChecksumGuest guest,
            Expected expected,
            Region r,
            long steps,
            long stride,
            long want,
            long got,
            Duration timeout)
            throws IOException {
        long lo = 0, hi = steps;
        while (hi - lo > 1) {
            long mid = (lo + hi) >>> 1;
            long g = guest.checksum(r.guestAddress() + lo * stride, mid - lo, stride, timeout);
            if (g != expected.fold(r, lo, mid - lo, stride)) hi = mid;
            else lo = mid;
        }
        long gpa = r.guestAddress() + lo * stride;
        long word = guest.checksum(gpa, 1, stride, timeout); // one step: the word itself
        long wantWord = expected.fold(r, lo, 1, stride);
        return new GuestException(
                String.format(
                        Locale.ROOT,
                        "guest check failed: the vCPU's checksum of region 0x%x is 0x%016x, the source's 0x%016x; first differing page at guest 0x%x: the vCPU read"
                                + " 0x%016x, the source holds 0x%016x",
                        r.guestAddress(),
                        got,
                        want,
                        gpa,
                        word,
                        wantWord),
                "KVM_EXIT_HLT");
    }

    /** The source's side: the word at the start of each sampled page, folded as the guest does. */
    private static final class Expected implements AutoCloseable {
        private final PageIndex index;
        private final ChunkReader reader;

        Expected(PageSource source) {
            this.index = new PageIndex(source);
            this.reader = new ChunkReader(source);
        }

        long fold(Region r, long fromStep, long steps, long stride) throws IOException {
            long sum = 0;
            for (long i = fromStep; i < fromStep + steps; i++)
                sum = GuestProgram.fold(sum, word(r.fileOffset() + i * stride));
            return sum;
        }

        private long word(long fileOffset) throws IOException {
            PageIndex.Location at = index.atFileOffset(fileOffset);
            if (at == null || at.kind() != PageKind.DATA) return 0;
            long within = fileOffset
                    - (at.region().fileOffset()
                            + (at.chunk().firstPage() + at.page()) * at.region().pageSize());
            // the whole chunk, kept while the scan is in it: one read a chunk, not one a page (a remote source's
            // round trips)
            return reader.chunk(at.index()).run(at.page(), 1).get(ValueLayout.JAVA_LONG_UNALIGNED, within);
        }

        @Override
        public void close() {
            reader.close();
        }
    }
}
