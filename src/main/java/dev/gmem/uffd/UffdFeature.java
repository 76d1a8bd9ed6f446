package dev.gmem.uffd;

import java.util.ArrayList;
import java.util.List;

/** userfaultfd feature bits, as negotiated by UFFDIO_API. */
public enum UffdFeature {
    PAGEFAULT_FLAG_WP(0),
    EVENT_FORK(1),
    EVENT_REMAP(2),
    EVENT_REMOVE(3),
    MISSING_HUGETLBFS(4),
    MISSING_SHMEM(5),
    EVENT_UNMAP(6),
    SIGBUS(7),
    THREAD_ID(8),
    MINOR_HUGETLBFS(9),
    MINOR_SHMEM(10),
    EXACT_ADDRESS(11),
    WP_HUGETLBFS_SHMEM(12),
    WP_UNPOPULATED(13),
    POISON(14),
    WP_ASYNC(15),
    MOVE(16);

    private final int bitNumber;

    UffdFeature(int bitNumber) {
        this.bitNumber = bitNumber;
    }

    public long bit() {
        return 1L << bitNumber;
    }

    public boolean in(long mask) {
        return (mask & bit()) != 0;
    }

    /** The names of the bits set in {@code mask}; unknown bits as "bit N". */
    public static List<String> names(long mask) {
        List<String> names = new ArrayList<>();
        long rest = mask;
        for (UffdFeature f : values()) {
            if (f.in(mask)) {
                names.add(f.name());
                rest &= ~f.bit();
            }
        }
        for (int b = 0; b < 64; b++) {
            if ((rest & (1L << b)) != 0) names.add("bit " + b);
        }
        return names;
    }

    public static long mask(UffdFeature... features) {
        long m = 0;
        for (UffdFeature f : features) m |= f.bit();
        return m;
    }
}
