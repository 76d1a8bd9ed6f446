package dev.gmem.fault;

import java.util.Locale;

/**
 * How a target's range is registered, and so how its data pages arrive. MISSING: faults on absent
 * pages, resolved with UFFDIO_COPY or UFFDIO_ZEROPAGE. MINOR (memory gmem owns): data is written
 * into the file with write(), then mapped with UFFDIO_CONTINUE; absent pages still fault MISSING.
 */
public enum UffdMode {
    MISSING,
    MINOR;

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** "missing" or "minor", in any case. */
    public static UffdMode parse(String s) {
        for (UffdMode m : values()) {
            if (m.label().equalsIgnoreCase(s.strip())) return m;
        }
        throw new IllegalArgumentException("unknown userfaultfd mode '" + s + "': use missing or minor");
    }
}
