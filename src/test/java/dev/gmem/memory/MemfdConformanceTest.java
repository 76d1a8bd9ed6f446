package dev.gmem.memory;

/** The conformance suite on the memfd backend, which implements the whole contract. */
class MemfdConformanceTest extends GuestMemoryConformance {
    @Override
    GuestMemory.Backend backend() {
        return GuestMemory.Backend.MEMFD;
    }

    @Override
    void assumeBackend() {
        // memfd exists on every Linux gmem runs on.
    }
}
