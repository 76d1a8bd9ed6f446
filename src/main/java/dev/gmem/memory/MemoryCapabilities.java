package dev.gmem.memory;

import dev.gmem.probe.Check;

/**
 * How a backend provides the contract's optional parts on this host: which path write() takes
 * ({@code writePath}, described in {@code write}), and two checks that are "no" with the probe's
 * reason where the backend raises {@link UnsupportedFeatureException}.
 */
public record MemoryCapabilities(WritePath writePath, String write, Check conversion, Check userfaultfd) {
    /** Where write() population happens. */
    public enum WritePath {
        /** The kernel's own write()/pwrite on the file: no page fault per page. */
        KERNEL,
        /** gmem's copy through its own shared mapping of the file (the kernel has no write() for it). */
        LIBRARY,
        /** Not possible for this file; {@code write} says why. */
        NONE
    }
}
