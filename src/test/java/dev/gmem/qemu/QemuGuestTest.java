package dev.gmem.qemu;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.bench.LinuxGuest;
import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.snapshot.Codec;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * A real Linux guest under QEMU (TCG): booted, snapshotted by gmem while it prints a counter,
 * restored into a new QEMU, and snapshotted and restored again from there. The restored guest's
 * first counter line is the one after the last before the snapshot, its data's sha256 is the
 * same, the device state is small, and the RAM allocated is about the guest's data.
 */
@Timeout(180)
class QemuGuestTest {
    static final int RAM_MIB = 256;
    static final int DATA_MIB = 24;
    static final Duration BOOT = Duration.ofSeconds(60);

    @TempDir
    static Path shared;

    static Path initramfs;

    @TempDir
    Path dir;

    @BeforeAll
    static void guest() throws Exception {
        if (LinuxGuest.unavailable() == null) initramfs = LinuxGuest.initramfs(shared.resolve("initramfs.cpio"));
    }

    private static List<String> guestCommand() {
        return LinuxGuest.command(initramfs, DATA_MIB, 50_000);
    }

    @ParameterizedTest
    @EnumSource(
            value = Codec.class,
            names = {"NONE", "ZSTD"})
    void aRestoredGuestGoesOnAtItsNextLineWithItsDataIntact(Codec codec) throws Exception {
        QemuVm.assumeGuest();
        Path snap = dir.resolve("vm.snap");
        // the source's RAM: a file on tmpfs for one codec, a memfd for the other
        List<String> source = guestCommand();
        source.addAll(
                codec == Codec.NONE
                        ? QemuVm.fileRam(
                                "pc.ram",
                                RAM_MIB,
                                Files.createTempDirectory(Path.of("/dev/shm"), "gmem-test-")
                                        .resolve("ram"))
                        : QemuVm.memfdRam("pc.ram", RAM_MIB));
        String sum;
        String before;
        QemuSnapshot.Report taken;
        try (QemuVm vm = QemuVm.start(source, dir)) {
            vm.console.awaitTick(3, BOOT);
            sum = vm.console.sha256(Duration.ofSeconds(30));
            vm.console.awaitTick(LinuxGuest.Console.ticks(vm.console.text()).getLast() + 2, Duration.ofSeconds(10));
            try (Qmp q = vm.connect()) {
                taken = QemuSnapshot.take(
                        q,
                        snap,
                        new QemuSnapshot.Options(codec, QemuSnapshot.After.QUIT, 2, Duration.ofSeconds(30)),
                        s -> {},
                        b -> {},
                        a -> {});
            }
            assertThat(vm.awaitExit(Duration.ofSeconds(20))).isZero();
            vm.console.awaitEnd(Duration.ofSeconds(5));
            before = vm.console.text();
        } finally {
            if (codec == Codec.NONE) cleanShm(source);
        }
        assertThat(taken.qemu().machine()).startsWith("pc-q35-");
        assertThat(taken.qemu().ramId()).isEqualTo("pc.ram");
        assertThat(taken.qemu().ramSize()).isEqualTo(RAM_MIB << 20);
        assertThat(taken.qemu().deviceStateBytes())
                .as("device state")
                .isPositive()
                .isLessThan(2 << 20);
        assertThat(taken.ramDataBytes()).isGreaterThan(DATA_MIB << 20).isLessThan(RAM_MIB << 20);

        // restored, and then snapshotted and restored once more from the restored QEMU
        String all = before;
        for (int round = 0; round < 2; round++) {
            Path next = dir.resolve("again" + round + ".snap");
            // the first restore into a memfd, the second into a file in a tmpfs directory
            Path ramDir = round == 0 ? null : Files.createTempDirectory(Path.of("/dev/shm"), "gmem-test-ram-");
            try (QemuRestore.Running r = QemuRestore.start(
                    snap,
                    guestCommand(),
                    new QemuRestore.Options(
                            ramDir, false, null, QemuRestore.Stdio.PIPE, null, 2, Duration.ofSeconds(30)),
                    s -> {})) {
                LinuxGuest.Console console = new LinuxGuest.Console(r.process());
                if (ramDir != null)
                    assertThat(listed(ramDir))
                            .as("the RAM file's name, once QEMU holds it")
                            .isEmpty();
                List<Long> last = LinuxGuest.Console.ticks(all);
                console.awaitTick(last.getLast() + 3, Duration.ofSeconds(30));
                assertThat(LinuxGuest.Console.ticks(console.text()).getFirst())
                        .as("the first counter line after the restore")
                        .isLessThanOrEqualTo(last.getLast() + 1);
                assertConsecutive(LinuxGuest.Console.ticks(all + console.text()));
                assertThat(console.sha256(Duration.ofSeconds(30)))
                        .as("the guest's data")
                        .isEqualTo(sum);
                try (Qmp q = Qmp.connect(r.qmpSocket(), Duration.ofSeconds(10))) {
                    QemuRam ram = QemuRam.locate(q);
                    long allocated;
                    try (Fd fd = Fd.open(ram.file(), Linux.O_RDONLY | Linux.O_CLOEXEC, 0)) {
                        allocated = allocatedBytes(fd.dataExtents(ram.size()));
                    }
                    assertThat(allocated)
                            .as("RAM allocated after the restore, against the guest's data")
                            .isLessThanOrEqualTo((long) (taken.ramDataBytes() * 1.1));
                    console.awaitTick(LinuxGuest.Console.ticks(console.text()).getLast() + 2, Duration.ofSeconds(10));
                    taken = QemuSnapshot.take(
                            q,
                            next,
                            new QemuSnapshot.Options(codec, QemuSnapshot.After.QUIT, 2, Duration.ofSeconds(30)),
                            s -> {},
                            b -> {},
                            a -> {});
                }
                assertThat(r.waitFor()).isZero();
                if (ramDir != null) {
                    assertThat(listed(ramDir)).isEmpty();
                    Files.delete(ramDir);
                }
                console.awaitEnd(Duration.ofSeconds(5));
                all = all + console.text();
            }
            snap = next;
        }
    }

    private static List<Path> listed(Path dir) throws java.io.IOException {
        try (var s = Files.list(dir)) {
            return s.toList();
        }
    }

    static long allocatedBytes(long[] extents) {
        long sum = 0;
        for (int i = 0; i + 1 < extents.length; i += 2) sum += extents[i + 1] - extents[i];
        return sum;
    }

    static void assertConsecutive(List<Long> ticks) {
        assertThat(ticks).isNotEmpty();
        List<Long> expected = new ArrayList<>();
        for (int i = 0; i < ticks.size(); i++) expected.add(ticks.getFirst() + i);
        assertThat(ticks).as("the counter, before and after each restore").isEqualTo(expected);
    }

    private static void cleanShm(List<String> command) {
        for (String w : command) {
            int at = w.indexOf("mem-path=");
            if (at < 0) continue;
            Path file = Path.of(w.substring(at + 9, w.indexOf(',', at)));
            try {
                Files.deleteIfExists(file);
                Files.deleteIfExists(file.getParent());
            } catch (java.io.IOException e) {
                // left for the OS's tmp cleaning
            }
        }
    }
}
