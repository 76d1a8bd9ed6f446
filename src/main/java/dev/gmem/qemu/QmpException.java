package dev.gmem.qemu;

import java.io.IOException;

/**
 * A QMP conversation that went wrong: QEMU answered a command with an error ({@link #errorClass}
 * is then QEMU's class, such as {@code GenericError}), the connection ended, or an answer did not
 * come in time.
 */
public class QmpException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String errorClass;

    public QmpException(String message) {
        this(message, null, null);
    }

    public QmpException(String message, String errorClass, Throwable cause) {
        super(message, cause);
        this.errorClass = errorClass;
    }

    /** QEMU's error class when QEMU refused a command, else null. */
    public String errorClass() {
        return errorClass;
    }
}
