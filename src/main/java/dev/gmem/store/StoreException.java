package dev.gmem.store;

import java.io.IOException;

/** A store request that failed, or an object that is not what it should be; the message names the object. */
public class StoreException extends IOException {
    private static final long serialVersionUID = 1L;

    public StoreException(String message) {
        super(message);
    }

    public StoreException(String message, Throwable cause) {
        super(message, cause);
    }
}
