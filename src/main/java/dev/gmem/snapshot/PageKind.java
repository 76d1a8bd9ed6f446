package dev.gmem.snapshot;

/** What a page of guest memory holds, as a snapshot records it. */
public enum PageKind {
    /** Never written: a hole in the memory file. Costs nothing to store or restore. */
    HOLE,
    /** Written, but all zeros. Costs nothing to store or restore: it reads as zeros without a copy. */
    ZERO,
    /** Anything else: stored in a chunk, copied on restore. */
    DATA
}
