package dev.gmem.fault;

/**
 * What the engine does with its range when it stops on a fatal error (a chunk whose checksum is
 * wrong, a source that cannot be read, an ioctl that fails). In both cases the error is recorded
 * and reported; a data page is never silently filled with zeros in its place.
 */
public enum OnFailure {
    /**
     * Unregister the range and wake every waiting thread, so that no thread hangs: for memory gmem
     * owns (a local restore), whose threads then see the failure from the engine, and whose memory
     * is to be discarded (pages not yet restored read as zeros from then on).
     */
    RELEASE,
    /**
     * Leave the range registered and the faulting threads waiting: for memory in another process,
     * whose owner (a VMM) must be stopped by the caller rather than run on with missing pages.
     */
    HOLD
}
