package dev.gmem.testing;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The leak check itself: a descriptor opened and kept is found by its file; one closed meanwhile is no leak. */
class LeaksTest {
    @TempDir
    Path dir;

    @Test
    void aKeptDescriptorIsFoundAndAClosedOneIsNot() throws Exception {
        Path early = Files.writeString(dir.resolve("early"), "x");
        Path kept = Files.writeString(dir.resolve("kept"), "x");
        RandomAccessFile before = new RandomAccessFile(early.toFile(), "r");
        Leaks.Fds fds;
        try {
            fds = Leaks.fds();
        } finally {
            before.close(); // open when the snapshot was taken, closed since: not a leak
        }
        assertThat(fds.opened()).isEmpty();
        RandomAccessFile leak = new RandomAccessFile(kept.toFile(), "r");
        try {
            assertThat(fds.opened()).singleElement().asString().endsWith(" -> " + kept.toRealPath());
        } finally {
            leak.close();
        }
        assertThat(fds.opened()).isEmpty();
    }
}
