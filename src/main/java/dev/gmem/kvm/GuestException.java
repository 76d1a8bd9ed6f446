package dev.gmem.kvm;

import java.io.IOException;

/** A guest run that went wrong: an unexpected exit, a time-out, or a result that differs; the message names the exit and the registers. */
public class GuestException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String exitReason;

    public GuestException(String message, String exitReason) {
        super(message);
        this.exitReason = exitReason;
    }

    public String exitReason() {
        return exitReason;
    }
}
