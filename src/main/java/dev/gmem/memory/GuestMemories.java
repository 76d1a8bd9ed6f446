package dev.gmem.memory;

import java.io.IOException;

/** Creates guest memory files by backend. */
public final class GuestMemories {
    private GuestMemories() {}

    /** A new guest memory file of {@code size} bytes with {@code flags} (MMAP, INIT_SHARED) on {@code backend}. */
    public static GuestMemory create(GuestMemory.Backend backend, long size, long flags) throws IOException {
        return switch (backend) {
            case KERNEL -> KernelGuestMemory.create(size, flags);
            case MEMFD -> MemfdGuestMemory.create(size, flags);
        };
    }
}
