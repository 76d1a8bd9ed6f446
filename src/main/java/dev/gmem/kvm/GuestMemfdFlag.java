package dev.gmem.kvm;

import java.util.ArrayList;
import java.util.List;

/**
 * The KVM_CREATE_GUEST_MEMFD flags whose meaning mainline fixes. Bits 2 and 3 have conflicting
 * out-of-tree meanings (write support, no direct map) and are never given a name here.
 */
public enum GuestMemfdFlag {
    /** The file may be mmap()ed (MAP_SHARED only). */
    MMAP(1L),
    /** Pages start shared (host-accessible) rather than private. */
    INIT_SHARED(1L << 1);

    private final long bit;

    GuestMemfdFlag(long bit) {
        this.bit = bit;
    }

    public long bit() {
        return bit;
    }

    /** A flag mask decoded: the named flags and the unknown bits (as bit numbers). */
    public record Decoded(List<GuestMemfdFlag> known, List<Integer> unknownBits) {
        /** Names, with unknown bits as "bit N": e.g. [MMAP, INIT_SHARED, bit 3]. */
        public List<String> names() {
            List<String> names = new ArrayList<>();
            known.forEach(f -> names.add(f.name()));
            unknownBits.forEach(b -> names.add("bit " + b));
            return names;
        }
    }

    public static Decoded decode(long mask) {
        List<GuestMemfdFlag> known = new ArrayList<>();
        long rest = mask;
        for (GuestMemfdFlag f : values()) {
            if ((mask & f.bit) != 0) {
                known.add(f);
                rest &= ~f.bit;
            }
        }
        List<Integer> unknown = new ArrayList<>();
        for (int b = 0; b < 64; b++) {
            if ((rest & (1L << b)) != 0) unknown.add(b);
        }
        return new Decoded(List.copyOf(known), List.copyOf(unknown));
    }

    public static long mask(GuestMemfdFlag... flags) {
        long m = 0;
        for (GuestMemfdFlag f : flags) m |= f.bit;
        return m;
    }
}
