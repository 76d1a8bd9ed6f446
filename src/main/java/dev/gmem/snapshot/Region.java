package dev.gmem.snapshot;

import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;

/**
 * One range of guest physical memory and where it lies in a memory file. Regions are laid end to
 * end in the file in the order given, as Firecracker writes its memory file: the first region at
 * file offset 0, the next right after it, and so on.
 *
 * @param guestAddress guest physical address of the first byte, a multiple of {@code pageSize}
 * @param size bytes, a positive multiple of {@code pageSize}
 * @param pageSize the region's page size: a power of two from 4 KiB to 2 MiB (a huge page)
 * @param fileOffset where the region starts in the memory file
 */
public record Region(long guestAddress, long size, long pageSize, long fileOffset) {
    public static final long MIN_PAGE = 4096;
    public static final long MAX_PAGE = 2L << 20;
    /** Guest physical addresses have at most 52 bits on x86-64 and arm64. */
    public static final long MAX_GUEST_ADDRESS = 1L << 52;

    public long pages() {
        return size / pageSize;
    }

    /** The guest physical address just past the region. */
    public long guestEnd() {
        return guestAddress + size;
    }

    public long fileEnd() {
        return fileOffset + size;
    }

    public boolean containsGuest(long address) {
        return address >= guestAddress && address - guestAddress < size;
    }

    /** One region at guest address 0 covering a memory file of {@code size} bytes. */
    public static List<Region> whole(long size, long pageSize) {
        return endToEnd(List.of(new Region(0, size, pageSize, 0)));
    }

    /**
     * The regions laid end to end in the order given (their {@code fileOffset}s are recomputed),
     * after checking each and that no two overlap in guest physical memory.
     *
     * @throws IllegalArgumentException naming the first region that is wrong and why
     */
    public static List<Region> endToEnd(List<Region> regions) {
        if (regions.isEmpty()) throw new IllegalArgumentException("no regions");
        List<Region> out = new ArrayList<>(regions.size());
        long offset = 0;
        for (int i = 0; i < regions.size(); i++) {
            Region r = regions.get(i);
            String what = "region " + i + " (guest 0x" + Long.toHexString(r.guestAddress) + ", " + r.size + " bytes)";
            if (r.pageSize < MIN_PAGE || r.pageSize > MAX_PAGE || Long.bitCount(r.pageSize) != 1) {
                throw new IllegalArgumentException(
                        what + ": page size " + r.pageSize + " is not a power of two between 4 KiB and 2 MiB");
            }
            if (r.size <= 0 || r.size % r.pageSize != 0) {
                throw new IllegalArgumentException(
                        what + ": size must be a positive multiple of its page size " + r.pageSize);
            }
            if (r.guestAddress < 0 || r.guestAddress % r.pageSize != 0) {
                throw new IllegalArgumentException(
                        what + ": guest address must be non-negative and a multiple of its page size " + r.pageSize);
            }
            if (r.guestAddress > MAX_GUEST_ADDRESS - r.size) {
                throw new IllegalArgumentException(
                        what + ": ends past the largest guest physical address (2^52, the architectural limit)");
            }
            if (offset > Long.MAX_VALUE - r.size)
                throw new IllegalArgumentException(what + ": the regions add up to more than 2^63 bytes");
            out.add(new Region(r.guestAddress, r.size, r.pageSize, offset));
            offset += r.size;
        }
        List<Region> byAddress = new ArrayList<>(out);
        byAddress.sort(Comparator.comparingLong(Region::guestAddress));
        for (int i = 1; i < byAddress.size(); i++) {
            Region a = byAddress.get(i - 1);
            Region b = byAddress.get(i);
            if (b.guestAddress < a.guestEnd()) {
                throw new IllegalArgumentException("regions overlap: guest 0x" + Long.toHexString(a.guestAddress)
                        + "-0x" + Long.toHexString(a.guestEnd()) + " and 0x" + Long.toHexString(b.guestAddress) + "-0x"
                        + Long.toHexString(b.guestEnd()));
            }
        }
        return List.copyOf(out);
    }

    /** The total bytes of {@code regions} laid end to end. */
    public static long totalSize(List<Region> regions) {
        Region last = regions.getLast();
        return last.fileEnd();
    }

    /**
     * Parses a region list: comma-separated {@code GPA:SIZE[:PAGESIZE]}, addresses in hex (0x…) or
     * decimal, sizes with an optional K, M, G or T suffix. Example: {@code 0:2G,0x100000000:1G}.
     */
    public static List<Region> parse(String spec, long defaultPageSize) {
        List<Region> regions = new ArrayList<>();
        for (String part : spec.split(",")) {
            String[] f = part.strip().split(":");
            if (f.length < 2 || f.length > 3) {
                throw new IllegalArgumentException(
                        "region '" + part.strip() + "' is not GPA:SIZE[:PAGESIZE] (example: 0x100000000:1G)");
            }
            long page = f.length == 3 ? parseSize(f[2]) : defaultPageSize;
            regions.add(new Region(parseAddress(f[0]), parseSize(f[1]), page, 0));
        }
        return endToEnd(regions);
    }

    private static long parseAddress(String s) {
        String v = s.strip().toLowerCase(java.util.Locale.ROOT);
        try {
            return v.startsWith("0x") ? Long.parseUnsignedLong(v.substring(2), 16) : parseSize(v);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException(
                    "'" + s.strip() + "' is not a guest address (examples: 0, 0x100000000, 4G)");
        }
    }

    /** "4096", "64K", "512M", "3G", "1T" (binary units; "KiB", "MB" and the like are accepted too). */
    public static long parseSize(String value) {
        String v = value.strip()
                .toUpperCase(java.util.Locale.ROOT)
                .replace("IB", "")
                .replace("B", "");
        if (v.isEmpty()) throw new IllegalArgumentException("empty size");
        long unit = switch (v.charAt(v.length() - 1)) {
            case 'K' -> 1L << 10;
            case 'M' -> 1L << 20;
            case 'G' -> 1L << 30;
            case 'T' -> 1L << 40;
            default -> 1;
        };
        String digits = unit == 1 ? v : v.substring(0, v.length() - 1);
        try {
            long n = Long.parseLong(digits);
            if (n < 0) throw new IllegalArgumentException("'" + value + "' is not a size: it is negative");
            return Math.multiplyExact(n, unit);
        } catch (NumberFormatException | ArithmeticException e) {
            throw new IllegalArgumentException("'" + value + "' is not a size (examples: 4096, 64K, 512M, 3G)");
        }
    }
}
