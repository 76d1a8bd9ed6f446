package dev.gmem.probe;

/**
 * One answer of the probe: whether the host can do a thing, and how that was found out (for a
 * "yes") or why not (for a "no"). The reason is always set.
 */
public record Check(boolean available, String reason) {
    public static Check yes(String how) {
        return new Check(true, how);
    }

    public static Check no(String why) {
        return new Check(false, why);
    }
}
