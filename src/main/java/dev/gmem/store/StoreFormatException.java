package dev.gmem.store;

/** An object or manifest in a store that is not what it should be: damaged, or not gmem's. */
public final class StoreFormatException extends StoreException {
    private static final long serialVersionUID = 1L;

    public StoreFormatException(String message) {
        super(message);
    }
}
