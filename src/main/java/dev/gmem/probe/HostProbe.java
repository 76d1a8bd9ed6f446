package dev.gmem.probe;

import dev.gmem.kvm.GuestMemfd;
import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.kvm.Kvm;
import dev.gmem.kvm.KvmAbi;
import dev.gmem.kvm.KvmCap;
import dev.gmem.kvm.Vm;
import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.Posix;
import dev.gmem.linux.SyscallException;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Finds out what this host can do by trying each thing for real (specification rule 99: probe
 * features, never kernel versions): creating a VM and guest_memfd files, writing to one,
 * converting, registering userfaultfd ranges and resolving faults on memfd. Never throws for a
 * missing feature: every "no" carries its reason. Everything it creates is released before it returns.
 */
public final class HostProbe {
    private static final byte PATTERN = (byte) 0x5a;
    private static volatile HostReport cached;
    private static volatile HostReport.Userfaultfd cachedUserfaultfd;
    private static volatile HostReport.HugePages cachedHugePages;

    private final long page = Posix.pageSize();

    /** The report for this host, probed once per process. */
    public static HostReport host() {
        HostReport r = cached;
        if (r == null) {
            synchronized (HostProbe.class) {
                r = cached;
                if (r == null) cached = r = new HostProbe().run();
            }
        }
        return r;
    }

    /**
     * The userfaultfd part of the report alone, probed once per process (or taken from the whole
     * report when that was probed): what a memfd restore needs, without creating a VM.
     */
    public static HostReport.Userfaultfd userfaultfdOfHost() {
        HostReport whole = cached;
        if (whole != null) return whole.userfaultfd();
        HostReport.Userfaultfd u = cachedUserfaultfd;
        if (u == null) {
            synchronized (HostProbe.class) {
                u = cachedUserfaultfd;
                if (u == null) cachedUserfaultfd = u = new HostProbe().userfaultfd();
            }
        }
        return u;
    }

    /** The huge-page part of the report alone, probed once per process, as {@link #userfaultfdOfHost}. */
    public static HostReport.HugePages hugePagesOfHost() {
        HostReport whole = cached;
        if (whole != null) return whole.hugePages();
        HostReport.HugePages h = cachedHugePages;
        if (h == null) {
            synchronized (HostProbe.class) {
                h = cachedHugePages;
                if (h == null) cachedHugePages = h = new HostProbe().hugePages();
            }
        }
        return h;
    }

    /** Probes now. */
    public HostReport run() {
        return new HostReport(kernel(), kvm(), guestMemfd(), userfaultfd(), hugePages());
    }

    private HostReport.Kernel kernel() {
        String release = "unknown";
        String machine = System.getProperty("os.arch");
        try {
            Posix.Uname u = Posix.uname();
            release = u.release();
            machine = u.machine();
        } catch (SyscallException e) {
            release = "unknown (" + e.getMessage() + ")";
        }
        return new HostReport.Kernel(release, machine, page, Posix.onlineCpus());
    }

    private static String kvmOpenFailure(SyscallException e) {
        String hint;
        if (e.is(Errno.ENOENT)) hint = ": the kernel has no KVM, or its module is not loaded";
        else if (e.is(Errno.EACCES) || e.is(Errno.EPERM))
            hint = ": this user may not open it (run as root, or join the group that owns /dev/kvm)";
        else hint = "";
        return e.getMessage() + hint;
    }

    private HostReport.Kvm kvm() {
        try (Kvm kvm = Kvm.open()) {
            return new HostReport.Kvm(
                    true,
                    "opened " + Kvm.DEVICE + ", KVM_GET_API_VERSION = " + kvm.apiVersion(),
                    Kvm.DEVICE.toString(),
                    kvm.apiVersion());
        } catch (SyscallException e) {
            return new HostReport.Kvm(false, kvmOpenFailure(e), Kvm.DEVICE.toString(), 0);
        }
    }

    private HostReport.GuestMemfd guestMemfd() {
        Kvm kvm;
        try {
            kvm = Kvm.open();
        } catch (SyscallException e) {
            return noGuestMemfd("KVM unavailable: " + kvmOpenFailure(e), 0, 0);
        }
        try (kvm) {
            if (kvm.check(KvmCap.GUEST_MEMFD) == 0) {
                return noGuestMemfd(
                        "KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD=234) = 0: the kernel was built without guest_memfd, or is older than 6.18",
                        0,
                        0);
            }
            long systemMask = Integer.toUnsignedLong(kvm.check(KvmCap.GUEST_MEMFD_FLAGS));
            try (Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT)) {
                if (vm.check(KvmCap.GUEST_MEMFD) == 0) {
                    return noGuestMemfd(
                            "KVM_CAP_GUEST_MEMFD is 0 for a default VM: guest_memfd needs a confidential VM type on this kernel",
                            systemMask,
                            0);
                }
                long vmMask = Integer.toUnsignedLong(vm.check(KvmCap.GUEST_MEMFD_FLAGS));
                long known = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);
                long flags = vmMask & known;
                try (GuestMemfd g = vm.createGuestMemfd(page, flags)) {
                    GuestMemfdFlag.Decoded decoded = GuestMemfdFlag.decode(systemMask);
                    String reason = "KVM_CAP_GUEST_MEMFD = 1; created a " + page
                            + "-byte guest_memfd in a default VM with flags "
                            + GuestMemfdFlag.decode(flags).names() + " (cap 244 = 0x" + Long.toHexString(systemMask)
                            + ")";
                    return new HostReport.GuestMemfd(
                            true,
                            reason,
                            systemMask,
                            decoded.names(),
                            decoded.unknownBits(),
                            vmMask,
                            write(vm, vmMask),
                            conversion(vm, g),
                            userfaultfdOnGuestMemfd(vm, vmMask));
                }
            }
        } catch (SyscallException e) {
            return noGuestMemfd(e.getMessage(), 0, 0);
        }
    }

    private static HostReport.GuestMemfd noGuestMemfd(String why, long systemMask, long vmMask) {
        Check no = Check.no("no guest_memfd: " + why);
        GuestMemfdFlag.Decoded decoded = GuestMemfdFlag.decode(systemMask);
        return new HostReport.GuestMemfd(
                false, why, systemMask, decoded.names(), decoded.unknownBits(), vmMask, no, no, no);
    }

    /**
     * write() population: pwrite one page into a fresh guest_memfd. Mainline refuses it (ESPIPE for
     * pwrite, EINVAL for write). A kernel that needs an out-of-tree creation flag answers ENODEV; then
     * each unknown bit the VM reports is tried.
     */
    private Check write(Vm vm, long vmMask) {
        long base = vmMask & GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);
        Check plain = tryWrite(vm, base);
        if (plain.available()) return plain;
        for (int bit : GuestMemfdFlag.decode(vmMask).unknownBits()) {
            Check withBit = tryWrite(vm, base | (1L << bit));
            if (withBit.available()) return withBit;
        }
        return plain;
    }

    private Check tryWrite(Vm vm, long flags) {
        String flagNames = GuestMemfdFlag.decode(flags).names().toString();
        try (GuestMemfd g = vm.createGuestMemfd(page, flags);
                Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(page);
            buf.fill(PATTERN);
            try {
                long n = g.fd().pwrite(buf, 0);
                return Check.yes("pwrite of one page into a guest_memfd with flags " + flagNames + " returned " + n);
            } catch (SyscallException e) {
                if (e.is(Errno.ESPIPE) || e.is(Errno.EINVAL)) {
                    return Check.no(
                            "pwrite on a guest_memfd (flags " + flagNames + ") fails with " + e.errnoText()
                                    + ": this kernel has no write() population for guest_memfd; gmem populates through a shared mapping instead");
                }
                if (e.is(Errno.ENODEV)) {
                    return Check.no("pwrite on a guest_memfd (flags " + flagNames
                            + ") fails with ENODEV: the kernel has write() population"
                            + " but only for files created with a write flag, and cap 244 names none gmem can use");
                }
                return Check.no(e.getMessage());
            }
        } catch (SyscallException e) {
            return Check.no("could not create a guest_memfd to try write(): " + e.getMessage());
        }
    }

    /** In-place conversion: KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd descriptor (ENOTTY: absent). */
    private Check conversion(Vm vm, GuestMemfd g) {
        String cap;
        try {
            cap = "KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES (provisionally 250) = "
                    + vm.check(KvmCap.GUEST_MEMFD_MEMORY_ATTRIBUTES);
        } catch (SyscallException e) {
            cap = e.getMessage();
        }
        try {
            g.setMemoryAttributes(0, page, 0);
            return Check.yes("KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd succeeded (setting a page shared); " + cap);
        } catch (SyscallException e) {
            if (e.is(Errno.ENOTTY)) {
                return Check.no(
                        "KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd fails with ENOTTY: this kernel has no in-place shared/private conversion; "
                                + cap);
            }
            if (e.is(Errno.EINVAL)) {
                return Check.no(
                        "KVM_SET_MEMORY_ATTRIBUTES2 exists but refuses a default VM (EINVAL): conversion needs a VM type with private memory; "
                                + cap);
            }
            return Check.no(e.getMessage() + "; " + cap);
        }
    }

    /** userfaultfd on a guest_memfd mapping: UFFDIO_REGISTER of a MAP_SHARED mapping (EINVAL: absent). */
    private Check userfaultfdOnGuestMemfd(Vm vm, long vmMask) {
        long needed = GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED);
        if ((vmMask & needed) != needed) {
            return Check.no("userfaultfd on guest_memfd needs MMAP and INIT_SHARED, and this VM offers only "
                    + GuestMemfdFlag.decode(vmMask).names());
        }
        try (GuestMemfd g = vm.createGuestMemfd(page, needed);
                Mapping m = Mapping.shared(g.fd(), page);
                Userfaultfd uffd = Userfaultfd.open(0)) {
            uffd.handshake(0);
            List<String> modes = new ArrayList<>();
            List<String> refused = new ArrayList<>();
            for (String mode : List.of("MISSING", "MINOR")) {
                long bits = mode.equals("MISSING") ? UffdAbi.REGISTER_MODE_MISSING : UffdAbi.REGISTER_MODE_MINOR;
                try {
                    uffd.register(m, 0, page, bits);
                    uffd.unregister(m.address(), page);
                    modes.add(mode);
                } catch (SyscallException e) {
                    refused.add(mode + ": " + e.errnoText());
                }
            }
            if (modes.isEmpty()) {
                return Check.no("UFFDIO_REGISTER on a MAP_SHARED guest_memfd mapping fails ("
                        + String.join("; ", refused) + "): this kernel cannot register userfaultfd on guest_memfd");
            }
            return Check.yes("UFFDIO_REGISTER on a guest_memfd mapping accepts " + modes
                    + (refused.isEmpty() ? "" : ", refuses " + refused));
        } catch (SyscallException e) {
            return Check.no(e.getMessage());
        }
    }

    private HostReport.Userfaultfd userfaultfd() {
        Userfaultfd.Api api;
        String via;
        try (Userfaultfd uffd = Userfaultfd.open(0)) {
            api = uffd.handshake(0);
            via = uffd.via() == Userfaultfd.Source.SYSCALL
                    ? "userfaultfd(2) system call"
                    : Userfaultfd.DEVICE.toString();
        } catch (SyscallException e) {
            String why = e.getMessage() + unprivilegedHint();
            Check no = Check.no("no userfaultfd: " + why);
            return new HostReport.Userfaultfd(false, why, "none", 0, List.of(), no, no);
        }
        String reason = "obtained through the " + via + "; UFFDIO_API offers "
                + UffdFeature.names(api.features()).size() + " features";
        return new HostReport.Userfaultfd(
                true,
                reason,
                via.startsWith("userfaultfd") ? "syscall" : "device",
                api.features(),
                UffdFeature.names(api.features()),
                missingOnMemfd(),
                minorOnMemfd(api.features()));
    }

    private static String unprivilegedHint() {
        try {
            String v = Files.readString(Path.of("/proc/sys/vm/unprivileged_userfaultfd"))
                    .trim();
            return v.equals("0")
                    ? " (vm.unprivileged_userfaultfd = 0: run as root, grant CAP_SYS_PTRACE, or give this user access to /dev/userfaultfd)"
                    : "";
        } catch (IOException e) {
            return "";
        }
    }

    /** MISSING on memfd: register a shared mapping, resolve its missing page with UFFDIO_COPY, read it back. */
    private Check missingOnMemfd() {
        try (Fd memfd = Fd.memfd("gmem-probe-missing", Linux.MFD_CLOEXEC);
                Arena arena = Arena.ofConfined()) {
            memfd.truncate(page);
            try (Mapping m = Mapping.shared(memfd, page);
                    Userfaultfd uffd = Userfaultfd.open(0)) {
                uffd.handshake(UffdFeature.MISSING_SHMEM.bit());
                uffd.register(m, 0, page, UffdAbi.REGISTER_MODE_MISSING);
                MemorySegment src = arena.allocate(page);
                src.fill(PATTERN);
                long copied = uffd.copy(m.address(), src, page, 0);
                if (copied != page) return Check.no("UFFDIO_COPY into a registered memfd mapping returned " + copied);
                if (m.segment().get(ValueLayout.JAVA_BYTE, page - 1) != PATTERN) {
                    return Check.no("UFFDIO_COPY succeeded but the mapping does not show the copied bytes");
                }
                long again = uffd.copy(m.address(), src, page, 0);
                if (again != Userfaultfd.EXISTS)
                    return Check.no("a second UFFDIO_COPY onto the same page returned " + again + ", not EEXIST");
                return Check.yes(
                        "registered a memfd mapping MISSING, resolved its page with UFFDIO_COPY and read the bytes back; a second COPY gave EEXIST");
            }
        } catch (SyscallException e) {
            return Check.no(e.getMessage());
        }
    }

    /** MINOR on memfd: write the page through the file, then map it with UFFDIO_CONTINUE. */
    private Check minorOnMemfd(long features) {
        if (!UffdFeature.MINOR_SHMEM.in(features)) {
            return Check.no("UFFDIO_API does not offer MINOR_SHMEM: the kernel cannot report minor faults on shmem");
        }
        try (Fd memfd = Fd.memfd("gmem-probe-minor", Linux.MFD_CLOEXEC);
                Arena arena = Arena.ofConfined()) {
            memfd.truncate(2 * page);
            try (Mapping m = Mapping.shared(memfd, 2 * page);
                    Userfaultfd uffd = Userfaultfd.open(0)) {
                uffd.handshake(UffdFeature.MINOR_SHMEM.bit());
                uffd.register(m, 0, 2 * page, UffdAbi.REGISTER_MODE_MINOR);
                long none = uffd.continueRange(m.address() + page, page, 0);
                if (none != Userfaultfd.NO_PAGE)
                    return Check.no(
                            "UFFDIO_CONTINUE over a page the file does not hold returned " + none + ", not EFAULT");
                MemorySegment src = arena.allocate(page);
                src.fill(PATTERN);
                memfd.pwriteFully(src, 0);
                long mapped = uffd.continueRange(m.address(), page, 0);
                if (mapped != page)
                    return Check.no("UFFDIO_CONTINUE of a page written through the file returned " + mapped);
                if (m.segment().get(ValueLayout.JAVA_BYTE, 0) != PATTERN) {
                    return Check.no(
                            "UFFDIO_CONTINUE succeeded but the mapping does not show the page written through the file");
                }
                return Check.yes(
                        "registered a memfd mapping MINOR, wrote a page with pwrite, mapped it with UFFDIO_CONTINUE and read it back;"
                                + " CONTINUE over an absent page gave EFAULT");
            }
        } catch (SyscallException e) {
            return Check.no(e.getMessage());
        }
    }

    private HostReport.HugePages hugePages() {
        Path thp = Path.of("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
        String mode = "unknown";
        Check thpCheck;
        try {
            String text = Files.readString(thp).trim();
            Matcher sel = Pattern.compile("\\[([a-z_]+)]").matcher(text);
            mode = sel.find() ? sel.group(1) : text;
            thpCheck = switch (mode) {
                case "always", "within_size", "force" ->
                    Check.yes(thp + " is '" + mode + "': shmem uses huge pages where it can");
                case "advise" -> Check.yes(thp + " is 'advise': shmem uses huge pages where MADV_HUGEPAGE asks");
                default ->
                    Check.no(thp + " is '" + mode
                            + "': shmem never uses transparent huge pages (an administrator can write 'advise' there)");
            };
        } catch (IOException e) {
            thpCheck = Check.no("cannot read " + thp + ": " + e.getMessage());
        }
        List<HostReport.HugetlbPool> pools = new ArrayList<>();
        Path root = Path.of("/sys/kernel/mm/hugepages");
        if (Files.isDirectory(root)) {
            try (Stream<Path> dirs = Files.list(root)) {
                for (Path d : dirs.sorted().toList()) {
                    Matcher m = Pattern.compile("hugepages-(\\d+)kB")
                            .matcher(d.getFileName().toString());
                    if (!m.matches()) continue;
                    pools.add(new HostReport.HugetlbPool(
                            Long.parseLong(m.group(1)),
                            readLong(d.resolve("nr_hugepages")),
                            readLong(d.resolve("free_hugepages"))));
                }
            } catch (IOException e) {
                // No pools to report.
            }
        }
        return new HostReport.HugePages(thpCheck, mode, List.copyOf(pools));
    }

    private static long readLong(Path p) {
        try {
            return Long.parseLong(Files.readString(p).trim());
        } catch (IOException | NumberFormatException e) {
            return 0;
        }
    }
}
