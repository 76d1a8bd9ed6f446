package dev.gmem.snapshot;

import java.nio.file.Path;

/** A chunk's stored data does not match its checksum: the snapshot is corrupt there. The message names the chunk, its guest address and both checksums. */
public final class ChunkChecksumException extends SnapshotFormatException {
    private static final long serialVersionUID = 1L;

    private final int chunk;
    private final long guestAddress;

    ChunkChecksumException(Path file, int chunk, long guestAddress, String problem) {
        super(file, problem);
        this.chunk = chunk;
        this.guestAddress = guestAddress;
    }

    public int chunk() {
        return chunk;
    }

    /** The guest physical address of the chunk's first page. */
    public long guestAddress() {
        return guestAddress;
    }
}
