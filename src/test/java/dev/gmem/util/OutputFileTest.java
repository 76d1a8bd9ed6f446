package dev.gmem.util;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.testing.Leaks;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The output discipline against planted links, special files, the input itself, and writers racing for one name. */
class OutputFileTest {
    @TempDir
    Path dir;

    static void write(OutputFile f, String text) throws Exception {
        try (Arena a = Arena.ofConfined()) {
            byte[] b = text.getBytes(StandardCharsets.UTF_8);
            MemorySegment s = a.allocate(b.length);
            s.copyFrom(MemorySegment.ofArray(b));
            f.fd().pwriteFully(s, 0);
        }
    }

    @Test
    void theFileAppearsOnlyOnCommitAndAFailedWriterLeavesNothing() throws Exception {
        Path out = dir.resolve("out");
        try (OutputFile f = OutputFile.create(out, OutputFile.Mode.CREATE, 0644)) {
            write(f, "done");
            assertThat(out).doesNotExist();
            assertThat(Leaks.partials(dir)).containsExactly(f.partialPath());
            f.commit();
        }
        assertThat(Files.readString(out)).isEqualTo("done");
        try (OutputFile f = OutputFile.create(dir.resolve("never"), OutputFile.Mode.CREATE, 0644)) {
            write(f, "half");
        }
        assertThat(dir.resolve("never")).doesNotExist();
        assertThat(Leaks.partials(dir)).isEmpty();
    }

    @Test
    void aPlantedSymbolicLinkIsNeverWrittenThrough() throws Exception {
        Path victim = Files.writeString(dir.resolve("victim"), "precious");
        Path out = dir.resolve("out");
        Files.createSymbolicLink(out, victim);
        for (OutputFile.Mode m : OutputFile.Mode.values()) {
            assertThatThrownBy(() -> OutputFile.create(out, m, 0644))
                    .isInstanceOf(OutputRefusedException.class)
                    .hasMessageContaining("symbolic link");
        }
        Files.createSymbolicLink(dir.resolve("dangling"), dir.resolve("nowhere"));
        assertThatThrownBy(() -> OutputFile.create(dir.resolve("dangling"), OutputFile.Mode.REPLACE, 0644))
                .hasMessageContaining("symbolic link");
        assertThat(dir.resolve("nowhere")).doesNotExist();
        assertThat(Files.readString(victim)).isEqualTo("precious");
        assertThat(Files.isSymbolicLink(out)).isTrue();
    }

    @Test
    void anOldStylePartialNameIsSomebodyElsesFileAndStaysUntouched() throws Exception {
        Path input = Files.writeString(dir.resolve("out.partial"), "an input");
        try (OutputFile f = OutputFile.create(dir.resolve("out"), OutputFile.Mode.REPLACE, 0644, input)) {
            write(f, "new");
            f.commit();
        }
        assertThat(Files.readString(input)).isEqualTo("an input");
        assertThat(Files.readString(dir.resolve("out"))).isEqualTo("new");
    }

    @Test
    void specialFilesDirectoriesAndTheInputItselfAreRefused() throws Exception {
        assertThatThrownBy(() -> OutputFile.create(Path.of("/dev/null"), OutputFile.Mode.REPLACE, 0644))
                .isInstanceOf(OutputRefusedException.class)
                .hasMessageContaining("not a regular file");
        assertThat(Files.isRegularFile(Path.of("/dev/null"), LinkOption.NOFOLLOW_LINKS))
                .isFalse();
        assertThatThrownBy(() -> OutputFile.create(dir, OutputFile.Mode.REPLACE, 0644))
                .hasMessageContaining("a directory");
        Path in = Files.writeString(dir.resolve("in"), "source");
        assertThatThrownBy(() -> OutputFile.create(in, OutputFile.Mode.REPLACE, 0644, in))
                .hasMessageContaining("is also the input");
        assertThatThrownBy(() -> OutputFile.create(dir.resolve("sub/../in"), OutputFile.Mode.REPLACE, 0644, in))
                .hasMessageContaining("is also the input");
        Path hard = dir.resolve("hard");
        Files.createLink(hard, in);
        assertThatThrownBy(() -> OutputFile.create(hard, OutputFile.Mode.REPLACE, 0644, in))
                .hasMessageContaining("is also the input");
        assertThat(Files.readString(in)).isEqualTo("source");
        assertThatThrownBy(() -> OutputFile.create(Path.of(""), OutputFile.Mode.CREATE, 0644))
                .hasMessageContaining("empty");
        assertThatThrownBy(() -> OutputFile.create(dir.resolve("no/such/dir/x"), OutputFile.Mode.CREATE, 0644))
                .hasMessageContaining("does not exist");
        assertThatThrownBy(() -> OutputFile.create(in, OutputFile.Mode.CREATE, 0644))
                .hasMessageContaining("already exists");
        assertThat(Leaks.partials(dir)).isEmpty();
    }

    @Test
    void ofTwoWritersRacingForANewNameTheLoserFailsAndTheWinnersFileStays() throws Exception {
        Path out = dir.resolve("out");
        try (OutputFile a = OutputFile.create(out, OutputFile.Mode.CREATE, 0644);
                OutputFile b = OutputFile.create(out, OutputFile.Mode.CREATE, 0644)) {
            assertThat(a.partialPath()).isNotEqualTo(b.partialPath());
            write(a, "writer a");
            write(b, "writer b");
            a.commit();
            assertThatThrownBy(b::commit)
                    .isInstanceOf(OutputRefusedException.class)
                    .hasMessageContaining("another writer");
        }
        assertThat(Files.readString(out)).isEqualTo("writer a");
        assertThat(Leaks.partials(dir)).isEmpty();
    }

    @Test
    void aReplacementRefusesATargetSwappedMeanwhile() throws Exception {
        Path out = Files.writeString(dir.resolve("out"), "old");
        try (OutputFile f = OutputFile.create(out, OutputFile.Mode.REPLACE, 0644)) {
            write(f, "mine");
            Files.delete(out);
            Files.writeString(out, "someone else's");
            assertThatThrownBy(f::commit)
                    .isInstanceOf(OutputRefusedException.class)
                    .hasMessageContaining("replaced or removed");
        }
        assertThat(Files.readString(out)).isEqualTo("someone else's");
        try (OutputFile f = OutputFile.create(out, OutputFile.Mode.REPLACE, 0644)) {
            write(f, "mine");
            f.commit();
        }
        assertThat(Files.readString(out)).isEqualTo("mine");
    }
}
