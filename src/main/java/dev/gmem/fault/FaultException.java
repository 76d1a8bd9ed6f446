package dev.gmem.fault;

import java.io.IOException;

/** The fault engine's errors: it stopped on a fatal error, or it was given a target and a provider that do not fit. */
public abstract sealed class FaultException extends IOException
        permits FaultEngineFailedException, TargetMismatchException {
    private static final long serialVersionUID = 1L;

    FaultException(String message, Throwable cause) {
        super(message, cause);
    }
}
