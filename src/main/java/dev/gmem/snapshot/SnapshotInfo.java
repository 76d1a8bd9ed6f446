package dev.gmem.snapshot;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;

/** What {@code gmem snapshot inspect} shows: a summary of a snapshot's manifest. */
public record SnapshotInfo(
        String path,
        int formatVersion,
        long fileSize,
        long guestBytes,
        int chunkBytes,
        String compression,
        List<RegionInfo> regions,
        long pages,
        long dataPages,
        long zeroPages,
        long holePages,
        long dataBytes,
        long storedBytes,
        double compressionRatio,
        long chunks,
        Map<String, Long> chunksByCodec,
        long accessOrderPages,
        List<AttachmentInfo> attachments) {

    public record RegionInfo(int index, long guestAddress, long size, long pageSize, long fileOffset) {}

    public record AttachmentInfo(String name, long bytes) {}

    public static SnapshotInfo of(Snapshot s) {
        Manifest m = s.manifest();
        PageCounts c = m.counts();
        List<RegionInfo> regions = new ArrayList<>();
        for (int i = 0; i < m.regions().size(); i++) {
            Region r = m.regions().get(i);
            regions.add(new RegionInfo(i, r.guestAddress(), r.size(), r.pageSize(), r.fileOffset()));
        }
        Map<Codec, Long> byCodec = new EnumMap<>(Codec.class);
        for (Chunk ch : m.chunks()) {
            if (ch.dataPages() > 0) byCodec.merge(ch.codec(), 1L, Long::sum);
        }
        Map<String, Long> codecs = new java.util.LinkedHashMap<>();
        byCodec.forEach((k, v) -> codecs.put(k.label(), v));
        return new SnapshotInfo(
                s.path().toString(),
                s.formatVersion(),
                s.fileSize(),
                m.size(),
                m.chunkBytes(),
                m.compression().label(),
                regions,
                c.pages(),
                c.dataPages(),
                c.zeroPages(),
                c.holePages(),
                c.dataBytes(),
                c.storedBytes(),
                c.storedBytes() == 0 ? 1.0 : (double) c.dataBytes() / c.storedBytes(),
                m.chunks().size(),
                codecs,
                m.accessOrder().length,
                m.attachments().stream()
                        .map(a -> new AttachmentInfo(a.name(), a.length()))
                        .toList());
    }
}
