package dev.gmem.cli;

import java.util.Locale;
import picocli.CommandLine;

/** Byte sizes on the command line: "0", "4096", "64K", "512M", "3G", "1T" (binary units). Commands check their own lower bounds. */
final class Sizes implements CommandLine.ITypeConverter<Long> {
    @Override
    public Long convert(String value) {
        return parse(value);
    }

    static long parse(String value) {
        try {
            return dev.gmem.snapshot.Region.parseSize(value);
        } catch (IllegalArgumentException e) {
            throw new CommandLine.TypeConversionException(e.getMessage());
        }
    }

    /** 536870912 as "512 MiB", 1536 as "1.5 KiB". */
    static String format(long bytes) {
        String[] units = {"B", "KiB", "MiB", "GiB", "TiB"};
        double v = bytes;
        int u = 0;
        while (v >= 1024 && u < units.length - 1) {
            v /= 1024;
            u++;
        }
        return (v == Math.rint(v) ? String.format(Locale.ROOT, "%.0f", v) : String.format(Locale.ROOT, "%.1f", v)) + " "
                + units[u];
    }
}
