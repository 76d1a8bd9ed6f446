package dev.gmem.snapshot;

import java.nio.charset.StandardCharsets;
import java.util.regex.Pattern;

/**
 * A named piece of bytes a snapshot carries besides guest memory, such as a VMM's device state
 * (format version 2): stored in the data area after the chunks, under its own CRC32C, and named in
 * the manifest, whose checksum covers the entry.
 *
 * @param name 1 to 32 characters of {@code [a-z0-9._-]}, unique in its snapshot
 * @param offset the file offset of its bytes
 * @param length its size in bytes
 * @param crc32c the CRC32C of its bytes
 */
public record Attachment(String name, long offset, long length, int crc32c) {
    /** Bytes of a name in the manifest entry. */
    public static final int NAME_BYTES = 32;

    /** The largest attachment: 1 GiB. */
    public static final long MAX_BYTES = 1L << 30;

    private static final Pattern NAME = Pattern.compile("[a-z0-9._-]{1," + NAME_BYTES + "}");

    /** Whether {@code name} is one a snapshot may carry. */
    public static boolean validName(String name) {
        return NAME.matcher(name).matches();
    }

    /** Fails with the rule when {@code name} is not one a snapshot may carry. */
    public static String checkName(String name) {
        if (!validName(name))
            throw new IllegalArgumentException("attachment name '" + name + "' is not 1 to " + NAME_BYTES
                    + " characters of a-z, 0-9, '.', '_' and '-'");
        return name;
    }

    static byte[] encodedName(String name) {
        return checkName(name).getBytes(StandardCharsets.US_ASCII);
    }
}
