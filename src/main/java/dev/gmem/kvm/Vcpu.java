package dev.gmem.kvm;

import dev.gmem.linux.Errno;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Mapping;
import dev.gmem.linux.SyscallException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A KVM vCPU (x86_64): owns its descriptor and the mapping of its shared {@code kvm_run} page.
 * {@link #run} enters the guest until it exits; another thread can make it return with
 * {@link #interrupt}.
 */
public final class Vcpu implements AutoCloseable {
    private final Fd fd;
    private final Mapping run;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment regs = arena.allocate(KvmAbi.REGS_BYTES, 8);
    private final MemorySegment sregs = arena.allocate(KvmAbi.SREGS_BYTES, 8);
    private volatile int threadId = -1;

    private Vcpu(Fd fd, Mapping run) {
        this.fd = fd;
        this.run = run;
    }

    /** KVM_CREATE_VCPU with id {@code id}, and the mapping of its kvm_run page. */
    public static Vcpu create(Vm vm, int id) throws SyscallException {
        int n = vm.fd().ioctl("KVM_CREATE_VCPU", KvmAbi.KVM_CREATE_VCPU, id);
        Fd fd = Fd.adopt(n, "kvm-vcpu:" + id);
        try {
            long size = vm.kvm().vcpuMmapSize();
            return new Vcpu(fd, Mapping.map(fd, 0, size, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED));
        } catch (SyscallException e) {
            fd.closeQuietly();
            throw e;
        }
    }

    /** The kvm_run page: exit reason and exit data ({@link KvmAbi}'s RUN_ offsets). */
    public MemorySegment runPage() {
        return run.segment();
    }

    public long[] registers() throws SyscallException {
        fd.ioctl("KVM_GET_REGS", KvmAbi.KVM_GET_REGS, regs);
        return regs.toArray(ValueLayout.JAVA_LONG);
    }

    public void setRegisters(long[] values) throws SyscallException {
        if (values.length != KvmAbi.REG_NAMES.length) throw new IllegalArgumentException("kvm_regs has 18 registers");
        MemorySegment.copy(values, 0, regs, ValueLayout.JAVA_LONG, 0, values.length);
        fd.ioctl("KVM_SET_REGS", KvmAbi.KVM_SET_REGS, regs);
    }

    /** KVM_GET_SREGS into a copy the caller may edit and pass to {@link #setSpecialRegisters}. */
    public MemorySegment specialRegisters(Arena into) throws SyscallException {
        fd.ioctl("KVM_GET_SREGS", KvmAbi.KVM_GET_SREGS, sregs);
        MemorySegment copy = into.allocate(KvmAbi.SREGS_BYTES, 8);
        copy.copyFrom(sregs);
        return copy;
    }

    public void setSpecialRegisters(MemorySegment values) throws SyscallException {
        sregs.copyFrom(values.asSlice(0, KvmAbi.SREGS_BYTES));
        fd.ioctl("KVM_SET_SREGS", KvmAbi.KVM_SET_SREGS, sregs);
    }

    /**
     * KVM_RUN: runs the guest until it exits and returns the exit reason (see
     * {@link KvmAbi#exitReason}). Returns {@link KvmAbi#EXIT_INTR} when {@link #interrupt} (or any
     * signal) stopped it. A blocking call, never critical.
     */
    public int run() throws SyscallException {
        threadId = dev.gmem.linux.Posix.threadId();
        try {
            fd.ioctl("KVM_RUN", KvmAbi.KVM_RUN, 0L);
        } catch (SyscallException e) {
            if (e.is(Errno.EINTR)) return KvmAbi.EXIT_INTR;
            throw e;
        } finally {
            threadId = -1;
        }
        return run.segment().get(ValueLayout.JAVA_INT, KvmAbi.RUN_EXIT_REASON);
    }

    /**
     * Makes a {@link #run} in progress on another thread return (EINTR, reported as
     * {@link KvmAbi#EXIT_INTR}): sets immediate_exit and signals the thread with SIGPIPE, which
     * this JVM ignores. Returns false when no run was in progress.
     */
    public boolean interrupt() throws SyscallException {
        run.segment().set(ValueLayout.JAVA_BYTE, KvmAbi.RUN_IMMEDIATE_EXIT, (byte) 1);
        int tid = threadId;
        if (tid < 0) return false;
        dev.gmem.linux.Posix.signalThread(tid, Linux.SIGPIPE);
        return true;
    }

    /** Clears immediate_exit after an {@link #interrupt}. */
    public void clearInterrupt() {
        run.segment().set(ValueLayout.JAVA_BYTE, KvmAbi.RUN_IMMEDIATE_EXIT, (byte) 0);
    }

    /** "rip=0x… rsi=0x… …": every general register, for error messages. */
    public String describeRegisters() {
        try {
            long[] r = registers();
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < r.length; i++)
                b.append(i == 0 ? "" : " ")
                        .append(KvmAbi.REG_NAMES[i])
                        .append("=0x")
                        .append(Long.toHexString(r[i]));
            return b.toString();
        } catch (SyscallException e) {
            return "registers unavailable (" + e.getMessage() + ")";
        }
    }

    @Override
    public void close() throws SyscallException {
        try {
            run.close();
        } finally {
            try {
                fd.close();
            } finally {
                arena.close();
            }
        }
    }
}
