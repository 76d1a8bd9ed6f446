package dev.gmem.memory;

/**
 * A backend cannot honestly provide a feature on this host: for example in-place conversion on a
 * kernel whose guest_memfd lacks it. The message carries the probe's reason.
 */
public final class UnsupportedFeatureException extends UnsupportedOperationException {
    private static final long serialVersionUID = 1L;
    private final String feature;
    private final String reason;

    public UnsupportedFeatureException(String backend, String feature, String reason) {
        super("unsupported on the " + backend + " backend: " + feature + ": " + reason);
        this.feature = feature;
        this.reason = reason;
    }

    public String feature() {
        return feature;
    }

    /** Why, as the host probe found it. */
    public String reason() {
        return reason;
    }
}
