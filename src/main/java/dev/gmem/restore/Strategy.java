package dev.gmem.restore;

import java.util.Locale;

/** Ways of filling guest memory from a source buffer; see {@link Populator}. */
public enum Strategy {
    /** mmap the file, then copy: the first touch of each page faults it in, one fault per page. The baseline. */
    MAPPED_COPY("mmap the file, then copy; one page fault per page (the baseline)"),
    /** mmap, fault every page in with MADV_POPULATE_WRITE in bulk, then copy into present pages. */
    POPULATE_COPY("mmap, MADV_POPULATE_WRITE to fault pages in in bulk, then copy"),
    /** {@link dev.gmem.memory.GuestMemory#write}: pwrite into the file, populate-once, no page faults. */
    WRITE("write() into the file (populate-once): no page faults"),
    /** MADV_HUGEPAGE on the mapping, then populate and copy: shmem transparent huge pages, where the host allows them. */
    THP_COPY("MADV_HUGEPAGE, MADV_POPULATE_WRITE, then copy: shmem transparent huge pages");

    private final String description;

    Strategy(String description) {
        this.description = description;
    }

    /** The command-line name: "mapped-copy", "populate-copy", "write", "thp-copy". */
    public String label() {
        return name().toLowerCase(Locale.ROOT).replace('_', '-');
    }

    public String description() {
        return description;
    }

    /** The strategy named {@code label}; fails listing the names. */
    public static Strategy parse(String label) {
        for (Strategy s : values()) {
            if (s.label().equals(label)) return s;
        }
        StringBuilder names = new StringBuilder();
        for (Strategy s : values()) names.append(names.isEmpty() ? "" : ", ").append(s.label());
        throw new IllegalArgumentException("unknown strategy '" + label + "': choose one of " + names);
    }
}
