package dev.gmem.kvm;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.SyscallException;
import java.nio.file.Path;

/** An open {@code /dev/kvm}: the system-scope KVM interface. Owns its descriptor. */
public final class Kvm implements AutoCloseable {
    public static final Path DEVICE = Path.of("/dev/kvm");

    private final Fd fd;

    private Kvm(Fd fd) {
        this.fd = fd;
    }

    /**
     * Opens /dev/kvm and checks the API version. Fails with ENOENT when the device is absent and
     * EACCES when this user may not open it.
     */
    public static Kvm open() throws SyscallException {
        return open(DEVICE);
    }

    public static Kvm open(Path device) throws SyscallException {
        Fd fd = Fd.open(device, Linux.O_RDWR | Linux.O_CLOEXEC, 0);
        Kvm kvm = new Kvm(fd);
        try {
            int version = kvm.apiVersion();
            if (version != KvmAbi.API_VERSION) {
                throw new SyscallException(
                        "ioctl KVM_GET_API_VERSION",
                        device + " reports version " + version + ", gmem speaks " + KvmAbi.API_VERSION,
                        dev.gmem.linux.Errno.EPROTO);
            }
        } catch (SyscallException e) {
            fd.closeQuietly();
            throw e;
        }
        return kvm;
    }

    /** KVM_GET_API_VERSION: 12 on every kernel since 2.6.22. */
    public int apiVersion() throws SyscallException {
        return fd.ioctl("KVM_GET_API_VERSION", KvmAbi.KVM_GET_API_VERSION, 0L);
    }

    /** KVM_CHECK_EXTENSION at system scope: 0 when absent, else the capability's value. */
    public int check(KvmCap cap) throws SyscallException {
        return fd.ioctl("KVM_CHECK_EXTENSION " + cap, KvmAbi.KVM_CHECK_EXTENSION, cap.number());
    }

    /** The size of the kvm_run area that each vCPU maps. */
    public int vcpuMmapSize() throws SyscallException {
        return fd.ioctl("KVM_GET_VCPU_MMAP_SIZE", KvmAbi.KVM_GET_VCPU_MMAP_SIZE, 0L);
    }

    /** KVM_CREATE_VM of {@code type} (x86: 0 for a default VM). */
    public Vm createVm(int type) throws SyscallException {
        int vmFd = fd.ioctl("KVM_CREATE_VM", KvmAbi.KVM_CREATE_VM, type);
        return new Vm(this, Fd.adopt(vmFd, "kvm-vm"));
    }

    public Fd fd() {
        return fd;
    }

    @Override
    public void close() throws SyscallException {
        fd.close();
    }
}
