package dev.gmem.fault;

/**
 * A range of another process's memory, registered with the userfaultfd it sent: {@code length}
 * bytes at {@code hostAddress} in that process hold the source bytes from {@code sourceOffset}, in
 * pages of {@code pageSize} bytes (4 KiB, or 2 MiB for hugetlbfs).
 */
public record ForeignRegion(long hostAddress, long length, long sourceOffset, long pageSize) {
    public long hostEnd() {
        return hostAddress + length;
    }

    public long sourceEnd() {
        return sourceOffset + length;
    }

    @Override
    public String toString() {
        return "0x" + Long.toHexString(hostAddress) + "+" + length + " (source offset " + sourceOffset + ", " + pageSize
                + "-byte pages)";
    }
}
