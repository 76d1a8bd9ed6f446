package dev.gmem.qemu;

import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * What a gmem snapshot of QEMU records besides guest RAM, as the attachment {@value #ATTACHMENT};
 * the device state itself is the attachment {@value #DEVICE_STATE}. Both lie under the snapshot's
 * checksums. The record is UTF-8 text, one {@code key=value} per line (keys below, in the order
 * of the fields); a reader ignores keys it does not know. Text, not JSON: a restore reads it on
 * its critical path, and a JSON mapper's first use costs tens of milliseconds there.
 *
 * @param qemuVersion {@code qemu-version}, "7.2.22": device state is specific to it
 * @param qemuPackage {@code qemu-package}, the distribution's build, such as "Debian 1:7.2+dfsg-7+deb12u18"; may be empty
 * @param machine {@code machine}, the machine type, such as "pc-q35-7.2" (never an alias)
 * @param ramId {@code ram-id}, the id of the memory backend that holds guest RAM
 * @param ramSize {@code ram-size}, its size in bytes
 * @param ramBackend {@code ram-backend}, its QOM type, such as "memory-backend-file"
 * @param deviceStateBytes {@code device-state-bytes}, the size of the device state
 * @param machineAliases {@code machine-aliases}, comma-separated: the names that stood for {@code machine}
 *     in the QEMU that took the snapshot ("q35"); may be empty, and is in snapshots taken before it was
 *     recorded
 */
public record QemuMeta(
        String qemuVersion,
        String qemuPackage,
        String machine,
        String ramId,
        long ramSize,
        String ramBackend,
        long deviceStateBytes,
        java.util.List<String> machineAliases) {
    public static final String ATTACHMENT = "qemu";
    public static final String DEVICE_STATE = "qemu.device-state";

    /** The record as the attachment holds it. */
    public byte[] toText() {
        StringBuilder b = new StringBuilder();
        line(b, "qemu-version", qemuVersion);
        line(b, "qemu-package", qemuPackage);
        line(b, "machine", machine);
        line(b, "ram-id", ramId);
        line(b, "ram-size", Long.toString(ramSize));
        line(b, "ram-backend", ramBackend);
        line(b, "device-state-bytes", Long.toString(deviceStateBytes));
        line(b, "machine-aliases", String.join(",", machineAliases));
        return b.toString().getBytes(StandardCharsets.UTF_8);
    }

    private static void line(StringBuilder b, String key, String value) {
        String v = value == null ? "" : value;
        if (v.indexOf('\n') >= 0 || v.indexOf('\r') >= 0)
            throw new IllegalArgumentException("QEMU record " + key + " has a line break: '" + v + "'");
        b.append(key).append('=').append(v).append('\n');
    }

    /** Reads the attachment's bytes; fails with a one-line reason when they are not a record of this shape. */
    public static QemuMeta fromText(byte[] bytes) {
        Map<String, String> f = new HashMap<>();
        for (String l : new String(bytes, StandardCharsets.UTF_8).split("\n")) {
            int eq = l.indexOf('=');
            if (eq > 0) f.put(l.substring(0, eq), l.substring(eq + 1));
        }
        for (String key : new String[] {"qemu-version", "machine", "ram-id", "ram-size", "device-state-bytes"}) {
            if (f.getOrDefault(key, "").isEmpty())
                throw new IllegalArgumentException("its '" + ATTACHMENT + "' record has no " + key);
        }
        try {
            return new QemuMeta(
                    f.get("qemu-version"),
                    f.getOrDefault("qemu-package", ""),
                    f.get("machine"),
                    f.get("ram-id"),
                    Long.parseLong(f.get("ram-size")),
                    f.getOrDefault("ram-backend", ""),
                    Long.parseLong(f.get("device-state-bytes")),
                    f.getOrDefault("machine-aliases", "").isEmpty()
                            ? java.util.List.of()
                            : java.util.List.of(f.get("machine-aliases").split(",")));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("its '" + ATTACHMENT + "' record has a size that is not a number");
        }
    }
}
