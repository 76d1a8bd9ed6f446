package dev.gmem.kvm;

import dev.gmem.linux.Mapping;
import dev.gmem.linux.SyscallException;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.time.Duration;

/**
 * A minimal KVM runner: one vCPU in 64-bit mode that runs {@link GuestProgram} over guest memory
 * already in the VM's memslots and reports a checksum of one word per page.
 *
 * <p>The guest's code, GDT and page tables live in a small reserved region of its own (an
 * anonymous mapping in memslot {@code reservedSlot}), placed at {@code reservedAddress}, a 2 MiB
 * boundary above guest memory. The page tables identity-map {@code [0, top)} with 2 MiB pages,
 * where {@code top} is the end of the reserved region rounded up to 1 GiB.
 *
 * <pre>
 *   reserved + 0x0000  code          reserved + 0x2000  PML4
 *   reserved + 0x1000  GDT           reserved + 0x3000  PDPT
 *                                    reserved + 0x4000  one page directory per GiB
 * </pre>
 */
public final class ChecksumGuest implements AutoCloseable {
    private static final long MIB2 = 2L << 20;
    private static final long GIB = 1L << 30;
    private static final long CODE = 0x0000, GDT = 0x1000, PML4 = 0x2000, PDPT = 0x3000, PD = 0x4000;
    private static final long PRESENT = 1, WRITABLE = 2, HUGE = 1 << 7;
    private static final long CR0_PE = 1,
            CR0_MP = 1 << 1,
            CR0_ET = 1 << 4,
            CR0_NE = 1 << 5,
            CR0_WP = 1 << 16,
            CR0_PG = 1L << 31;
    private static final long CR4_PAE = 1 << 5;
    private static final long EFER_LME = 1 << 8, EFER_LMA = 1 << 10;

    private final Vm vm;
    private final int reservedSlot;
    private final long reservedAddress;
    private final Mapping reserved;
    private final Vcpu vcpu;
    private long exits;

    private ChecksumGuest(Vm vm, int reservedSlot, long reservedAddress, Mapping reserved, Vcpu vcpu) {
        this.vm = vm;
        this.reservedSlot = reservedSlot;
        this.reservedAddress = reservedAddress;
        this.reserved = reserved;
        this.vcpu = vcpu;
    }

    /** Where the reserved region goes for guest memory that ends at {@code guestEnd}. */
    public static long reservedAddressAbove(long guestEnd) {
        return (guestEnd + MIB2 - 1) / MIB2 * MIB2;
    }

    /**
     * Sets up the reserved region in memslot {@code reservedSlot} at {@code reservedAddress} (a
     * 2 MiB boundary, below 512 GiB) and a vCPU ready for {@link #checksum}.
     */
    public static ChecksumGuest create(Vm vm, int reservedSlot, long reservedAddress) throws IOException {
        if (reservedAddress % MIB2 != 0)
            throw new IllegalArgumentException("the reserved region must start on a 2 MiB boundary");
        long top = (reservedAddress + MIB2 + GIB - 1) / GIB * GIB;
        long directories = top / GIB;
        if (directories > 512)
            throw new IllegalArgumentException("guest memory above 512 GiB is beyond this runner's page tables");
        long size = (PD + directories * 4096 + MIB2 - 1) / MIB2 * MIB2;
        Mapping m = Mapping.anonymous(size);
        Vcpu vcpu = null;
        try {
            MemorySegment r = m.segment();
            byte[] code = GuestProgram.code();
            MemorySegment.copy(code, 0, r, ValueLayout.JAVA_BYTE, CODE, code.length);
            // GDT: null, 64-bit code (selector 0x08), data (selector 0x10)
            r.set(ValueLayout.JAVA_LONG, GDT + 8, 0x00AF9A000000FFFFL);
            r.set(ValueLayout.JAVA_LONG, GDT + 16, 0x00CF92000000FFFFL);
            r.set(ValueLayout.JAVA_LONG, PML4, (reservedAddress + PDPT) | PRESENT | WRITABLE);
            for (long g = 0; g < directories; g++) {
                long pd = PD + g * 4096;
                r.set(ValueLayout.JAVA_LONG, PDPT + g * 8, (reservedAddress + pd) | PRESENT | WRITABLE);
                for (long e = 0; e < 512; e++)
                    r.set(ValueLayout.JAVA_LONG, pd + e * 8, (g * GIB + e * MIB2) | PRESENT | WRITABLE | HUGE);
            }
            vm.setUserMemoryRegion(reservedSlot, 0, reservedAddress, size, m.address());
            vcpu = Vcpu.create(vm, 0);
            try (Arena a = Arena.ofConfined()) {
                MemorySegment s = vcpu.specialRegisters(a);
                segment(s, KvmAbi.SREGS_CS, 0x08, 11, true);
                for (long seg :
                        new long[] {KvmAbi.SREGS_DS, KvmAbi.SREGS_ES, KvmAbi.SREGS_FS, KvmAbi.SREGS_GS, KvmAbi.SREGS_SS
                        }) segment(s, seg, 0x10, 3, false);
                s.set(ValueLayout.JAVA_LONG, KvmAbi.SREGS_GDT, reservedAddress + GDT);
                s.set(ValueLayout.JAVA_SHORT, KvmAbi.SREGS_GDT + 8, (short) 23);
                s.set(ValueLayout.JAVA_LONG, KvmAbi.SREGS_CR3, reservedAddress + PML4);
                s.set(ValueLayout.JAVA_LONG, KvmAbi.SREGS_CR4, CR4_PAE);
                s.set(ValueLayout.JAVA_LONG, KvmAbi.SREGS_CR0, CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG);
                s.set(ValueLayout.JAVA_LONG, KvmAbi.SREGS_EFER, EFER_LME | EFER_LMA);
                vcpu.setSpecialRegisters(s);
            }
            return new ChecksumGuest(vm, reservedSlot, reservedAddress, m, vcpu);
        } catch (Throwable e) {
            if (vcpu != null) vcpu.close();
            try {
                vm.setUserMemoryRegion(reservedSlot, 0, reservedAddress, 0, m.address());
            } catch (SyscallException ignored) {
                // the slot was never set
            }
            m.close();
            throw e;
        }
    }

    /** A flat segment: base 0, limit 4 GiB, present, ring 0; code segments are 64-bit (L), data segments 32-bit default size (DB). */
    private static void segment(MemorySegment s, long at, int selector, int type, boolean code) {
        s.set(ValueLayout.JAVA_LONG, at, 0);
        s.set(ValueLayout.JAVA_INT, at + 8, 0xFFFFFFFF);
        s.set(ValueLayout.JAVA_SHORT, at + 12, (short) selector);
        byte[] flags = {(byte) type, 1, 0, (byte) (code ? 0 : 1), 1, (byte) (code ? 1 : 0), 1, 0, 0, 0};
        // type, present, dpl, db, s, l, g, avl, unusable, padding
        MemorySegment.copy(flags, 0, s, ValueLayout.JAVA_BYTE, at + 14, flags.length);
    }

    /** VM exits taken so far (two port writes and a halt per checksum, more when interrupted). */
    public long exits() {
        return exits;
    }

    /**
     * Runs the guest program over {@code steps} words from guest address {@code start}, {@code stride}
     * bytes apart, and returns its checksum. Fails when the guest does not halt within
     * {@code timeout}, exits unexpectedly, or halts without reporting, naming the exit and the registers.
     */
    public long checksum(long start, long steps, long stride, Duration timeout) throws IOException {
        if (steps < 1) throw new IllegalArgumentException("at least one step");
        long[] regs = new long[KvmAbi.REG_NAMES.length];
        regs[KvmAbi.RSI] = start;
        regs[KvmAbi.RCX] = steps;
        regs[KvmAbi.RDX] = stride;
        regs[KvmAbi.RIP] = reservedAddress + CODE;
        regs[KvmAbi.RFLAGS] = 0x2;
        vcpu.setRegisters(regs);
        vcpu.clearInterrupt();
        long deadline = System.nanoTime() + timeout.toNanos();
        boolean[] timedOut = {false};
        Thread watchdog = Thread.ofPlatform()
                .daemon()
                .name("gmem-vcpu-watchdog")
                .start(() -> {
                    try {
                        while (true) {
                            long left = deadline - System.nanoTime();
                            if (left > 0) {
                                Thread.sleep(Math.max(1, left / 1_000_000));
                                continue;
                            }
                            synchronized (timedOut) {
                                timedOut[0] = true;
                            }
                            vcpu.interrupt();
                            Thread.sleep(50);
                        }
                    } catch (InterruptedException | SyscallException done) {
                        // the run ended
                    }
                });
        try {
            long[] halves = new long[2];
            int reported = 0;
            MemorySegment run = vcpu.runPage();
            while (true) {
                int reason = vcpu.run();
                exits++;
                switch (reason) {
                    case KvmAbi.EXIT_IO -> {
                        int dir = run.get(ValueLayout.JAVA_BYTE, KvmAbi.RUN_IO_DIRECTION);
                        int size = run.get(ValueLayout.JAVA_BYTE, KvmAbi.RUN_IO_SIZE);
                        int port = Short.toUnsignedInt(run.get(ValueLayout.JAVA_SHORT, KvmAbi.RUN_IO_PORT));
                        long off = run.get(ValueLayout.JAVA_LONG, KvmAbi.RUN_IO_DATA_OFFSET);
                        if (dir != KvmAbi.KVM_EXIT_IO_OUT || size != 4 || port != GuestProgram.PORT || reported >= 2) {
                            throw failure(
                                    "unexpected port I/O (" + (dir == KvmAbi.KVM_EXIT_IO_OUT ? "out" : "in")
                                            + ", port 0x" + Integer.toHexString(port) + ", size " + size + ")",
                                    reason);
                        }
                        halves[reported++] = Integer.toUnsignedLong(run.get(ValueLayout.JAVA_INT, off));
                    }
                    case KvmAbi.EXIT_HLT -> {
                        if (reported != 2) throw failure("the guest halted before reporting its checksum", reason);
                        return halves[0] | (halves[1] << 32);
                    }
                    case KvmAbi.EXIT_INTR -> {
                        boolean late;
                        synchronized (timedOut) {
                            late = timedOut[0];
                        }
                        if (late) throw failure("the guest did not halt within " + timeout.toMillis() + " ms", reason);
                        vcpu.clearInterrupt();
                    }
                    case KvmAbi.EXIT_FAIL_ENTRY ->
                        throw failure(
                                "KVM could not enter the guest (hardware reason 0x"
                                        + Long.toHexString(run.get(ValueLayout.JAVA_LONG, KvmAbi.RUN_FAIL_ENTRY_REASON))
                                        + ")",
                                reason);
                    case KvmAbi.EXIT_INTERNAL_ERROR ->
                        throw failure(
                                "KVM internal error, suberror "
                                        + run.get(ValueLayout.JAVA_INT, KvmAbi.RUN_INTERNAL_SUBERROR),
                                reason);
                    case KvmAbi.EXIT_MMIO ->
                        throw failure(
                                "the guest touched guest physical 0x"
                                        + Long.toHexString(run.get(ValueLayout.JAVA_LONG, KvmAbi.RUN_MMIO_PHYS_ADDR))
                                        + ", which no memslot backs",
                                reason);
                    case KvmAbi.EXIT_MEMORY_FAULT ->
                        throw failure(
                                "memory fault at guest physical 0x"
                                        + Long.toHexString(run.get(ValueLayout.JAVA_LONG, KvmAbi.RUN_MEMORY_FAULT_GPA)),
                                reason);
                    default -> throw failure("unexpected exit", reason);
                }
            }
        } finally {
            watchdog.interrupt();
            vcpu.clearInterrupt();
        }
    }

    private GuestException failure(String what, int reason) {
        String name = KvmAbi.exitReason(reason);
        return new GuestException("guest check: " + what + " (" + name + "; " + vcpu.describeRegisters() + ")", name);
    }

    /** Closes the vCPU and removes the reserved memslot; guest memory slots are the caller's. */
    @Override
    public void close() throws IOException {
        try {
            vcpu.close();
        } finally {
            try {
                vm.setUserMemoryRegion(reservedSlot, 0, reservedAddress, 0, reserved.address());
            } finally {
                reserved.close();
            }
        }
    }
}
