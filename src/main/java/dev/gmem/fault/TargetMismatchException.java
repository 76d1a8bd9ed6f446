package dev.gmem.fault;

/** A page provider and a fault target that do not fit: the target covers bytes the provider does not have, or their page sizes differ. */
public final class TargetMismatchException extends FaultException {
    private static final long serialVersionUID = 1L;

    TargetMismatchException(String message) {
        super(message, null);
    }
}
