package dev.gmem.memory;

import dev.gmem.probe.Check;

/**
 * How a backend provides the contract's optional parts on this host. {@code write} says which
 * population path write() takes; the two checks are "no" with the probe's reason where the backend
 * raises {@link UnsupportedFeatureException}.
 */
public record MemoryCapabilities(String write, Check conversion, Check userfaultfd) {}
