package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.fault.ForeignRegion;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** The state directory: a VM's record read back whole, and each way it can be unusable named. */
class StateDirTest {
    @TempDir
    Path dir;

    @Test
    void aRecordReadsBackAndEachDamageIsNamed() throws Exception {
        List<ForeignRegion> regions =
                List.of(new ForeignRegion(1L << 40, 8192, 0, 4096), new ForeignRegion(1L << 41, 4096, 8192, 4096));
        long before = System.currentTimeMillis();
        try (StateDir s = StateDir.open(dir, "snap 1 2")) {
            assertThat(s.lastSeenAlive()).as("nobody held it before").isEqualTo(-1);
            assertThatThrownBy(() -> StateDir.open(dir, "snap 1 2"))
                    .hasMessageContaining("another gmem fc-handler uses this state directory");
            StateDir.Vm vm = s.record(42, 7, 1000, regions);
            vm.removed(1L << 40, (1L << 40) + 4096);
            vm.close();
            StateDir.Recorded r = s.recorded().getFirst();
            assertThat(r.problem()).isNull();
            assertThat(r.pid()).isEqualTo(42);
            assertThat(r.startTime()).isEqualTo(7);
            assertThat(r.uid()).isEqualTo(1000);
            assertThat(r.regions()).isEqualTo(regions);
            assertThat(r.takeovers()).isZero();
            assertThat(s.tookOver(r)).isEqualTo(1);
            assertThat(s.tookOver(s.recorded().getFirst())).isEqualTo(2);
            assertThat(s.recorded().getFirst().takeovers()).isEqualTo(2);
            assertThat(r.removed())
                    .singleElement()
                    .satisfies(x -> assertThat(x).containsExactly(1L << 40, (1L << 40) + 4096));
            // a handler that died between reading removals and recording them: the kernel left them in its
            // events buffer, a page fault beside them, and they read back with the log's
            StateDir.Vm again = s.reopen(r.key());
            java.lang.foreign.MemorySegment events = again.events(dev.gmem.uffd.UffdAbi.MSG.byteSize() * 64);
            long size = dev.gmem.uffd.UffdAbi.MSG.byteSize();
            long start = dev.gmem.uffd.UffdAbi.MSG.byteOffset(
                    java.lang.foreign.MemoryLayout.PathElement.groupElement("arg"),
                    java.lang.foreign.MemoryLayout.PathElement.groupElement("remove"),
                    java.lang.foreign.MemoryLayout.PathElement.groupElement("start"));
            events.set(java.lang.foreign.ValueLayout.JAVA_BYTE, 0, (byte) dev.gmem.uffd.UffdAbi.EVENT_PAGEFAULT);
            events.set(java.lang.foreign.ValueLayout.JAVA_BYTE, size, (byte) dev.gmem.uffd.UffdAbi.EVENT_REMOVE);
            events.set(java.lang.foreign.ValueLayout.JAVA_LONG, size + start, (1L << 41));
            events.set(java.lang.foreign.ValueLayout.JAVA_LONG, size + start + 8, (1L << 41) + 4096);
            again.close(); // as a SIGKILL leaves it: the mapping's stores are in the file
            assertThat(s.recorded().getFirst().problem()).isNull();
            assertThat(s.recorded().getFirst().removed()).extracting(x -> x[0]).containsExactly(1L << 40, 1L << 41);
            // a removal cut short: its range is unknown
            Files.write(
                    dir.resolve(r.key() + ".removed"), new byte[] {1, 2, 3}, java.nio.file.StandardOpenOption.APPEND);
            assertThat(s.recorded().getFirst().problem()).contains("cut short");
            // another source
            try (StateDir other = reopen(s)) {
                assertThat(other.recorded().getFirst().problem()).contains("served from another source");
            }
        }
        // a damaged record
        Files.writeString(dir.resolve("vm-1-2.json"), "{\"pid\":");
        Files.createFile(dir.resolve("vm-1-2.removed"));
        long after = System.currentTimeMillis();
        try (StateDir s = StateDir.open(dir, "snap 1 2")) {
            assertThat(s.lastSeenAlive())
                    .as("the holder before let go in between")
                    .isBetween(before, after);
            assertThat(s.recorded())
                    .filteredOn(x -> x.key().equals("vm-1-2"))
                    .singleElement()
                    .satisfies(x -> assertThat(x.problem()).contains("unreadable"));
            s.forget("vm-1-2");
            assertThat(dir.resolve("vm-1-2.json")).doesNotExist();
        }
    }

    private StateDir reopen(StateDir s) throws Exception {
        s.close();
        return StateDir.open(dir, "another 3 4");
    }
}
