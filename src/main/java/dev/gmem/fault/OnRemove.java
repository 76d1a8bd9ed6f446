package dev.gmem.fault;

import java.util.Locale;

/** What a page that the guest discarded (a UFFD_EVENT_REMOVE: MADV_REMOVE, MADV_DONTNEED) reads as afterwards. */
public enum OnRemove {
    /** Zeros, as the kernel would give without userfaultfd: never the old contents (Firecracker's balloon needs this). */
    ZERO,
    /** The page's contents fetched from the provider again. */
    REFETCH;

    /** "zero" or "refetch", in any case. */
    public static OnRemove parse(String s) {
        for (OnRemove r : values()) {
            if (r.name().equalsIgnoreCase(s.strip())) return r;
        }
        throw new IllegalArgumentException("unknown removal policy '" + s + "': use zero or refetch");
    }

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }
}
