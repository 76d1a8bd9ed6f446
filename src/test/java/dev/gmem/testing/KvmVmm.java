package dev.gmem.testing;

import dev.gmem.kvm.ChecksumGuest;
import dev.gmem.kvm.GuestProgram;
import dev.gmem.kvm.Kvm;
import dev.gmem.kvm.KvmAbi;
import dev.gmem.kvm.Vm;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.UnixSockets;
import dev.gmem.uffd.UffdAbi;
import dev.gmem.uffd.UffdFeature;
import dev.gmem.uffd.Userfaultfd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A test VMM with a real KVM vCPU, run as its own process: it sets up guest memory as Firecracker
 * does (anonymous private regions, a non-blocking userfaultfd with EVENT_REMOVE, each region
 * registered MISSING), sends the handshake to a page-fault handler over a Unix socket, then makes
 * the regions the memslots of a VM, end to end from guest physical 0, and has its vCPU read one
 * word of every page ({@link ChecksumGuest}): each first touch is a fault KVM raises, served by the
 * handler in the other process. Then it reads its memory from the host side too.
 *
 * <pre>  KvmVmm SOCKET MEMORY_FILE SIZE[,SIZE...]</pre>
 *
 * Prints {@code guest=G host=H wrong=W exits=E}: the vCPU's checksum, the same fold over its memory
 * read from the host side, the pages that differ from MEMORY_FILE, and the VM exits. Exits 0
 * when done, 1 with the error on stderr.
 */
public final class KvmVmm {
    private static final long PAGE = 4096;

    private KvmVmm() {}

    public static void main(String[] args) throws Exception {
        if (args.length != 3) {
            System.err.println("usage: KvmVmm SOCKET MEMORY_FILE SIZE[,SIZE...]");
            System.exit(2);
        }
        List<Mapping> regions = new ArrayList<>();
        long total = 0;
        StringBuilder json = new StringBuilder("[");
        try (Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK)) {
            uffd.handshake(UffdFeature.EVENT_REMOVE.bit());
            for (String size : args[2].split(",")) {
                long n = Long.parseLong(size);
                Mapping m = Mapping.map(
                        null,
                        0,
                        n,
                        Linux.PROT_READ | Linux.PROT_WRITE,
                        Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_NORESERVE);
                regions.add(m);
                uffd.register(m.address(), n, UffdAbi.REGISTER_MODE_MISSING);
                json.append(json.length() > 1 ? "," : "")
                        .append("{\"base_host_virt_addr\":")
                        .append(Long.toUnsignedString(m.address()))
                        .append(",\"size\":")
                        .append(n)
                        .append(",\"offset\":")
                        .append(total)
                        .append(",\"page_size\":4096,\"page_size_kib\":4096}");
                total += n;
            }
            json.append(']');
            try (Fd socket = UnixSockets.connect(Path.of(args[0]));
                    Arena arena = Arena.ofConfined()) {
                byte[] bytes = json.toString().getBytes(StandardCharsets.US_ASCII);
                MemorySegment data = arena.allocate(bytes.length);
                data.copyFrom(MemorySegment.ofArray(bytes));
                UnixSockets.send(socket, data, List.of(uffd.fd()));
                run(regions, total, Path.of(args[1]));
            }
        } finally {
            for (Mapping m : regions) m.close();
        }
    }

    private static void run(List<Mapping> regions, long total, Path memoryFile) throws Exception {
        try (Kvm kvm = Kvm.open();
                Vm vm = kvm.createVm(KvmAbi.VM_TYPE_DEFAULT)) {
            long gpa = 0;
            for (int slot = 0; slot < regions.size(); slot++) {
                Mapping m = regions.get(slot);
                vm.setUserMemoryRegion(slot, 0, gpa, m.segment().byteSize(), m.address());
                gpa += m.segment().byteSize();
            }
            long guest;
            long exits;
            try (ChecksumGuest g =
                    ChecksumGuest.create(vm, regions.size(), ChecksumGuest.reservedAddressAbove(total))) {
                guest = g.checksum(0, total / PAGE, PAGE, Duration.ofMinutes(2));
                exits = g.exits();
            }
            long host = 0;
            long wrong = 0;
            try (Fd file = Fd.open(memoryFile, Linux.O_RDONLY | Linux.O_CLOEXEC, 0);
                    Mapping expected = Mapping.map(file, 0, total, Linux.PROT_READ, Linux.MAP_PRIVATE)) {
                long at = 0;
                for (Mapping m : regions) {
                    MemorySegment s = m.segment();
                    for (long p = 0; p < s.byteSize(); p += PAGE, at += PAGE) {
                        host = GuestProgram.fold(host, s.get(ValueLayout.JAVA_LONG, p));
                        if (MemorySegment.mismatch(s, p, p + PAGE, expected.segment(), at, at + PAGE) >= 0) wrong++;
                    }
                }
            }
            System.out.println("guest=" + Long.toUnsignedString(guest) + " host=" + Long.toUnsignedString(host)
                    + " wrong=" + wrong + " exits=" + exits);
        }
    }
}
