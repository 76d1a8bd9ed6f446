package dev.gmem.trace;

import java.util.List;

/**
 * What happened over a restore, at low cost: the page counters by path sampled every millisecond
 * (never a record per page), the moments it became ready and fully resident, and the fault-latency
 * histogram at the end. Written and read by {@link TraceFile}; drawn by {@link TraceReport}.
 *
 * @param what what was traced, e.g. "lazy restore of vm.snap (missing mode)"
 * @param pageSize bytes per page
 * @param dataPages data pages the restore puts in place
 * @param samples the counters over time, in order
 * @param readyMs when faults were first served (-1: unknown)
 * @param populatedMs when every data page was in place (-1: not reached)
 * @param latencyBoundsUs the latency histogram's upper bounds in microseconds, ascending
 * @param latencyCounts faults per bucket, one more than the bounds (the last above every bound)
 */
public record Trace(
        String what,
        long pageSize,
        long dataPages,
        List<Sample> samples,
        double readyMs,
        double populatedMs,
        List<Long> latencyBoundsUs,
        List<Long> latencyCounts) {

    /** Cumulative counts at {@code ms} after the restore began. */
    public record Sample(
            double ms, long faults, long faultPages, long faultAroundPages, long zeroPages, long prefetchPages) {}
}
