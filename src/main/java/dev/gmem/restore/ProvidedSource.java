package dev.gmem.restore;

import dev.gmem.fault.PageProvider;
import dev.gmem.snapshot.PageSource;

/**
 * A source that brings its own page provider for lazy restores: a page server's, whose pages come
 * over the network and are pushed rather than fetched one batch at a time. A lazy restore serves
 * faults from {@link #provider} instead of reading the source's chunks; everything else (the map,
 * verification, the guest check) reads it as any {@link PageSource}.
 */
public interface ProvidedSource extends PageSource {
    /** The provider, the source's own: closing it stops what it started for the restore, not the source. */
    PageProvider provider();
}
