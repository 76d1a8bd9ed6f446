package dev.gmem.qemu;

import java.io.IOException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;

/**
 * The QEMU command line a caller gives {@code gmem qemu restore}: its program, and what gmem must
 * know of its options before adding its own (the machine type, a memory backend, the RAM size, an
 * incoming migration). Options are read as QEMU reads them: one or two leading dashes, and a value
 * in the next word unless the option is one of QEMU's flags.
 *
 * @param program the QEMU binary (the first word)
 * @param args the words after it
 * @param machineType the machine type the words choose, or null (QEMU's default)
 * @param memoryBackend the machine's memory-backend, or null
 * @param ramSize the size -m gives, in bytes, or -1
 * @param objectIds the ids of every -object
 * @param incoming whether the words already ask for an incoming migration
 * @param paused whether they hold -S
 * @param daemonize whether they hold -daemonize
 */
public record QemuArgs(
        String program,
        List<String> args,
        String machineType,
        String memoryBackend,
        long ramSize,
        Set<String> objectIds,
        boolean incoming,
        boolean paused,
        boolean daemonize) {
    /** QEMU's options that take no value (as of 7.2). */
    private static final Set<String> FLAGS = Set.of(
            "S",
            "s",
            "nographic",
            "nodefaults",
            "no-reboot",
            "no-shutdown",
            "snapshot",
            "daemonize",
            "enable-kvm",
            "no-user-config",
            "nouserconfig",
            "full-screen",
            "no-hpet",
            "no-acpi",
            "no-fd-bootchk",
            "version",
            "help",
            "h",
            "preconfig",
            "enable-fips",
            "win2k-hack",
            "rtc-td-hack",
            "no-kvm-pit-reinjection",
            "only-migratable",
            "no-quit",
            "semihosting",
            "no-frame",
            "alt-grab",
            "ctrl-grab",
            "curses",
            "portrait",
            "usb",
            "singlestep",
            "old-param",
            "enable-sync-profile",
            "perfmap",
            "jitdump",
            "mem-prealloc",
            "async-teardown");

    public static QemuArgs parse(List<String> command) {
        if (command.isEmpty() || command.getFirst().startsWith("-"))
            throw new IllegalArgumentException(
                    "the QEMU command after '--' must begin with the QEMU program (for example qemu-system-x86_64)");
        List<String> args = List.copyOf(command.subList(1, command.size()));
        String machine = null;
        String backend = null;
        long ram = -1;
        Set<String> ids = new HashSet<>();
        boolean incoming = false;
        boolean paused = false;
        boolean daemonize = false;
        for (int i = 0; i < args.size(); i++) {
            String word = args.get(i);
            if (!word.startsWith("-") || word.equals("-") || word.equals("--")) continue;
            String name = word.startsWith("--") ? word.substring(2) : word.substring(1);
            if (FLAGS.contains(name)) {
                if (name.equals("S")) paused = true;
                if (name.equals("daemonize")) daemonize = true;
                continue;
            }
            String value = i + 1 < args.size() ? args.get(++i) : null;
            if (value == null) break; // QEMU says what is wrong with it
            switch (name) {
                case "machine", "M" -> {
                    for (String part : splitOptions(value)) {
                        if (part.startsWith("type=")) machine = part.substring(5);
                        else if (part.startsWith("memory-backend="))
                            backend = part.substring("memory-backend=".length());
                        else if (!part.contains("=") && !part.isEmpty()) machine = part;
                    }
                }
                case "m" -> {
                    for (String part : splitOptions(value)) {
                        if (part.startsWith("size=")) ram = size(part.substring(5));
                        else if (!part.contains("=")) ram = size(part);
                    }
                }
                case "object" -> {
                    for (String part : splitOptions(value)) {
                        if (part.startsWith("id=")) ids.add(part.substring(3));
                    }
                }
                case "incoming" -> incoming = true;
                default -> {}
            }
        }
        return new QemuArgs(
                command.getFirst(), args, machine, backend, ram, Set.copyOf(ids), incoming, paused, daemonize);
    }

    /** QEMU's option syntax: comma-separated, a doubled comma standing for a comma. */
    static List<String> splitOptions(String value) {
        List<String> out = new ArrayList<>();
        StringBuilder b = new StringBuilder();
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if (c == ',' && i + 1 < value.length() && value.charAt(i + 1) == ',') {
                b.append(',');
                i++;
            } else if (c == ',') {
                out.add(b.toString());
                b.setLength(0);
            } else b.append(c);
        }
        out.add(b.toString());
        return out;
    }

    /** A value for QEMU's option syntax: commas doubled. */
    static String quote(String value) {
        return value.replace(",", ",,");
    }

    /** QEMU's size syntax for -m: a number with an optional binary suffix, MiB when it has none. */
    static long size(String text) {
        String t = text.strip().toUpperCase(Locale.ROOT);
        if (t.endsWith("B") && t.length() > 1 && !Character.isDigit(t.charAt(t.length() - 2)))
            t = t.substring(0, t.length() - 1);
        long unit = 1L << 20;
        if (!t.isEmpty() && "KMGT".indexOf(t.charAt(t.length() - 1)) >= 0) {
            unit = 1L << (10 * (1 + "KMGT".indexOf(t.charAt(t.length() - 1))));
            t = t.substring(0, t.length() - 1);
        }
        try {
            double v = Double.parseDouble(t);
            return (long) (v * unit);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("QEMU option -m: '" + text + "' is not a size");
        }
    }

    /**
     * Checks these words against the snapshot's record, before QEMU starts: the RAM backend's id and
     * size (the machine type is {@link #checkMachine}'s).
     */
    void check(QemuMeta meta) throws IOException {
        if (incoming)
            throw new RefusedException("the QEMU command has -incoming: gmem gives QEMU its own (-incoming defer)");
        if (daemonize)
            throw new RefusedException(
                    "the QEMU command has -daemonize: gmem supervises the QEMU it starts; leave it out");
        if (memoryBackend != null && !memoryBackend.equals(meta.ramId()))
            throw new RefusedException("the snapshot's RAM is memory backend '" + meta.ramId()
                    + "', but the QEMU command names memory-backend=" + memoryBackend);
        if (objectIds.contains(meta.ramId()))
            throw new RefusedException("the QEMU command creates an object '" + meta.ramId()
                    + "', the id gmem gives the restored RAM: leave that -object out");
        if (ramSize >= 0 && ramSize != meta.ramSize())
            throw new RefusedException("the snapshot's RAM is " + meta.ramSize()
                    + " bytes, but the QEMU command says -m " + ramSize + " bytes");
    }

    /** Whether the machine type needs resolving (an alias such as "q35") before {@link #checkMachine}. */
    boolean machineNeedsResolving(QemuMeta meta) {
        return machineType != null && !machineType.equals(meta.machine());
    }

    /** Checks the machine type, {@code resolved} being what the command's name for it stands for. */
    void checkMachine(QemuMeta meta, String resolved) throws IOException {
        if (machineType != null && !machineType.equals(meta.machine())) {
            if (!meta.machine().equals(resolved))
                throw new RefusedException(
                        "the snapshot is of machine " + meta.machine() + ", but the QEMU command starts "
                                + (resolved == null || resolved.equals(machineType)
                                        ? machineType
                                        : resolved + " (-machine " + machineType + ")"));
        }
    }

    /** A restore gmem will not start; the message says why. */
    public static final class RefusedException extends IOException {
        private static final long serialVersionUID = 1L;

        public RefusedException(String message) {
            super(message);
        }
    }
}
