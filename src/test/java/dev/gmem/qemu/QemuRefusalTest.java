package dev.gmem.qemu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.bench.LinuxGuest;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.Snapshot;
import dev.gmem.snapshot.SnapshotFormatException;
import dev.gmem.snapshot.SnapshotWriter;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * gmem qemu snapshot and restore against a real QEMU with no guest to run (paused before it
 * starts): every refusal, and a QEMU that dies while it loads. Each says what is wrong in one line,
 * starts no QEMU where it can refuse first, and leaves no RAM file behind.
 */
@Timeout(120)
class QemuRefusalTest {
    @TempDir
    static Path shared;

    /** A snapshot of a bare QEMU with a virtio-rng device, RAM 'ram0' of 64 MiB. */
    static Path snap;

    @TempDir
    Path dir;

    static final QemuSnapshot.Options QUIT =
            new QemuSnapshot.Options(Codec.NONE, QemuSnapshot.After.QUIT, 2, Duration.ofSeconds(30));

    @BeforeAll
    static void snapshotOfABareQemu() throws Exception {
        if (LinuxGuest.findProgram(LinuxGuest.QEMU) == null) return;
        snap = shared.resolve("bare.snap");
        // RAM in a file that already holds data, which QEMU takes as it is (share=on)
        Path ram = shared.resolve("ram0");
        byte[] data = new byte[1 << 20];
        new java.util.Random(4).nextBytes(data);
        try (var f = new java.io.RandomAccessFile(ram.toFile(), "rw")) {
            f.setLength(64 << 20);
            f.seek(8 << 20);
            f.write(data);
            f.seek(40 << 20);
            f.write(data, 0, 4096);
        }
        try (QemuVm vm = QemuVm.start(
                        QemuVm.bare(QemuVm.fileRam("ram0", 64, ram), "-device", "virtio-rng-pci"), shared);
                Qmp q = vm.connect()) {
            QemuSnapshot.take(q, snap, QUIT, s -> {}, b -> {}, a -> {});
            assertThat(vm.awaitExit(Duration.ofSeconds(20))).isZero();
        }
    }

    static QemuRestore.Options options(Path ramDir, boolean force) {
        return new QemuRestore.Options(ramDir, force, null, QemuRestore.Stdio.PIPE, null, 2, Duration.ofSeconds(30));
    }

    private static long children() {
        return ProcessHandle.current().children().filter(ProcessHandle::isAlive).count();
    }

    /**
     * Asserts that restoring {@code file} into {@code command} fails with {@code type} and
     * {@code text}, that every QEMU it started was reaped and no RAM file is left; unless
     * {@code qemuStarts}, that QEMU never started (the program is a wrapper that notes each start,
     * its machine list aside).
     */
    private void refused(
            Path file, List<String> command, Class<? extends Throwable> type, String text, boolean qemuStarts)
            throws Exception {
        Path ramDir = Files.createDirectories(dir.resolve("ram"));
        Path marker = dir.resolve("qemu-started");
        Path wrapper = dir.resolve("qemu-wrapper");
        Files.writeString(
                wrapper,
                "#!/bin/sh\ncase \"$*\" in \"-machine help\") echo asked >> " + asked() + " ;; *) echo started >> "
                        + marker + " ;; esac\nexec " + LinuxGuest.QEMU + " \"$@\"\n");
        Files.setPosixFilePermissions(wrapper, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
        List<String> wrapped = new ArrayList<>(command);
        if (wrapped.getFirst().equals(LinuxGuest.QEMU)) wrapped.set(0, wrapper.toString());
        Files.deleteIfExists(marker);
        Files.deleteIfExists(asked());
        long before = children();
        assertThatThrownBy(() -> QemuRestore.start(file, wrapped, options(ramDir, false), s -> {}))
                .isInstanceOf(type)
                .hasMessageContaining(text);
        assertThat(children()).as("QEMU reaped").isEqualTo(before);
        try (var files = Files.list(ramDir)) {
            assertThat(files.toList()).as("no RAM file left").isEmpty();
        }
        assertThat(Files.exists(marker)).as("QEMU started").isEqualTo(qemuStarts);
    }

    /** Where the wrapper of {@link #refused} notes each time the binary was asked for its machine types. */
    private Path asked() {
        return dir.resolve("qemu-asked");
    }

    private static List<String> restoreCommand(String... extra) {
        List<String> c = new ArrayList<>(List.of(
                LinuxGuest.QEMU, "-accel", "tcg", "-nodefaults", "-display", "none", "-device", "virtio-rng-pci"));
        c.addAll(List.of(extra));
        return c;
    }

    @Test
    void ramThatIsNotSharedIsRefusedWithTheOptionsToAddAndTheVmLeftAsItWas() throws Exception {
        QemuVm.assumeQemu();
        try (QemuVm vm = QemuVm.start(QemuVm.bare(List.of("-m", "64M")), dir);
                Qmp q = vm.connect()) {
            assertThatThrownBy(() -> QemuSnapshot.take(q, dir.resolve("x.snap"), QUIT, s -> {}, b -> {}, a -> {}))
                    .isInstanceOf(QemuRam.NotShareableException.class)
                    .hasMessageContaining("guest RAM 'pc.ram' (memory-backend-ram) has share=off")
                    .hasMessageContaining(
                            "-object memory-backend-memfd,id=pc.ram,size=64M,share=on -machine memory-backend=pc.ram");
            assertThat(q.execute("query-status", Map.of()).path("status").asString(""))
                    .isEqualTo("prelaunch");
            assertThat(dir.resolve("x.snap")).doesNotExist();
        }
    }

    @Test
    void aSnapshotThatFailsAfterTheVmStoppedLeavesItRunningWithItsSettings() throws Exception {
        QemuVm.assumeQemu();
        List<String> running = new ArrayList<>(QemuVm.bare(QemuVm.memfdRam("mem", 32)));
        running.remove("-S");
        try (QemuVm vm = QemuVm.start(running, dir);
                Qmp q = vm.connect()) {
            long bandwidth = q.execute("query-migrate-parameters", Map.of())
                    .path("max-bandwidth")
                    .asLong();
            Path nowhere = dir.resolve("no-such-directory").resolve("x.snap");
            assertThatThrownBy(() -> QemuSnapshot.take(q, nowhere, QUIT, s -> {}, b -> {}, a -> {}))
                    .isInstanceOf(IOException.class);
            assertThat(q.execute("query-status", Map.of()).path("status").asString(""))
                    .isEqualTo("running");
            assertThat(q.execute("query-migrate-parameters", Map.of())
                            .path("max-bandwidth")
                            .asLong())
                    .isEqualTo(bandwidth);
            for (var c : q.execute("query-migrate-capabilities", Map.of())) {
                if (c.path("capability").asString("").equals("x-ignore-shared"))
                    assertThat(c.path("state").asBoolean()).isFalse();
            }
            assertThat(vm.process.isAlive()).isTrue();
        }
    }

    @Test
    void noQmpAtTheSocketIsSaidSo() {
        assertThatThrownBy(() -> Qmp.connect(dir.resolve("none.sock"), Duration.ofSeconds(2)))
                .isInstanceOf(QmpException.class)
                .hasMessageContaining("no QMP at " + dir.resolve("none.sock"))
                .hasMessageContaining("ENOENT");
    }

    @Test
    void aCommandThatDoesNotFitTheSnapshotIsRefusedBeforeQemuStarts() throws Exception {
        QemuVm.assumeQemu();
        refused(
                snap,
                restoreCommand("-machine", "q35,memory-backend=other"),
                QemuArgs.RefusedException.class,
                "the snapshot's RAM is memory backend 'ram0', but the QEMU command names memory-backend=other",
                false);
        refused(
                snap,
                restoreCommand("-machine", "pc"),
                QemuArgs.RefusedException.class,
                "the snapshot is of machine pc-q35-7.2, but the QEMU command starts pc-i440fx-",
                false);
        assertThat(asked())
                .as("an alias the snapshot does not record is resolved by the binary")
                .exists();
        refused(
                snap,
                restoreCommand("-m", "128M"),
                QemuArgs.RefusedException.class,
                "the snapshot's RAM is 67108864 bytes, but the QEMU command says -m 134217728 bytes",
                false);
        refused(snap, restoreCommand("-incoming", "defer"), QemuArgs.RefusedException.class, "-incoming", false);
        refused(
                snap,
                restoreCommand("-object", "memory-backend-ram,id=ram0,size=64M"),
                QemuArgs.RefusedException.class,
                "creates an object 'ram0'",
                false);
        assertThatThrownBy(() -> QemuRestore.start(snap, List.of("-accel", "tcg"), options(null, false), s -> {}))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("must begin with the QEMU program");
    }

    @Test
    void snapshotsThatAreNotOfQemuOrAreDamagedAreRefusedBeforeQemuStarts() throws Exception {
        QemuVm.assumeQemu();
        Path plain = Fixtures.pack(Fixtures.raw(dir, "raw", 4 << 20, 1), dir.resolve("plain.snap"), Codec.NONE);
        refused(plain, restoreCommand(), SnapshotFormatException.class, "is not a snapshot of QEMU", false);

        // no device state
        Path noState = dir.resolve("nostate.snap");
        rewrite(snap, noState, a -> a.remove(QemuMeta.DEVICE_STATE));
        refused(noState, restoreCommand(), SnapshotFormatException.class, "has no QEMU device state", false);

        // a damaged chunk, the last with data: found as the RAM is restored (after the others were written into
        // a RAM file QEMU never sees), before QEMU starts, and that file removed
        byte[] bytes = Files.readAllBytes(snap);
        long chunkAt;
        try (Snapshot s = Snapshot.open(snap)) {
            chunkAt = s.manifest().chunks().stream()
                    .filter(c -> c.storedLength() > 0)
                    .reduce((a, b) -> b)
                    .orElseThrow()
                    .offset();
        }
        bytes[(int) chunkAt + 100] ^= 1;
        Path damaged = dir.resolve("damaged.snap");
        Files.write(damaged, bytes);
        refused(damaged, restoreCommand("-machine", "q35"), IOException.class, "checksum mismatch", false);
        assertThat(asked())
                .as("the alias the snapshot records needs no QEMU to resolve it")
                .doesNotExist();

        // a damaged device state
        bytes = Files.readAllBytes(snap);
        long stateAt;
        try (Snapshot s = Snapshot.open(snap)) {
            stateAt = s.manifest().attachment(QemuMeta.DEVICE_STATE).offset();
        }
        bytes[(int) stateAt + 10] ^= 1;
        Files.write(damaged, bytes);
        refused(damaged, restoreCommand(), SnapshotFormatException.class, "attachment 'qemu.device-state'", false);
    }

    /** The snapshot records the alias its QEMU gave the machine; a record from before that key reads as none. */
    @Test
    void theMachinesAliasIsRecordedAndAnOlderRecordHasNone() throws Exception {
        QemuVm.assumeQemu();
        QemuMeta m;
        try (Snapshot s = Snapshot.open(snap)) {
            m = QemuMeta.fromText(s.attachment(QemuMeta.ATTACHMENT));
        }
        assertThat(m.machine()).startsWith("pc-q35-");
        assertThat(m.machineAliases()).containsExactly("q35");
        String older = new String(m.toText(), java.nio.charset.StandardCharsets.UTF_8)
                .replaceAll("(?m)^machine-aliases=.*\n", "");
        QemuMeta o = QemuMeta.fromText(older.getBytes(java.nio.charset.StandardCharsets.UTF_8));
        assertThat(o.machineAliases()).isEmpty();
        assertThat(o.machine()).isEqualTo(m.machine());
    }

    /**
     * A record whose alias this QEMU resolves to another machine (as another build of the same
     * version may): QEMU starts, since no binary was asked, but is refused by what it reports of its
     * machine before it is given any device state, and reaped.
     */
    @Test
    void anAliasThisQemuMapsToAnotherMachineIsRefusedBeforeTheDeviceState() throws Exception {
        QemuVm.assumeQemu();
        Path lying = dir.resolve("alias.snap");
        rewriteMeta(snap, lying, m -> edited(m, m.qemuVersion(), List.of("pc")));
        refused(
                lying,
                restoreCommand("-machine", "pc"),
                QemuArgs.RefusedException.class,
                "the snapshot is of machine pc-q35-7.2, but the QEMU command starts pc-i440fx-",
                true);
        assertThat(asked())
                .as("the record's alias was taken without asking the binary")
                .doesNotExist();
    }

    @Test
    void deviceStateFromAnotherQemuVersionIsRefusedUnlessForced() throws Exception {
        QemuVm.assumeQemu();
        Path other = dir.resolve("other.snap");
        rewriteMeta(snap, other, m -> edited(m, "7.1.0", m.machineAliases()));
        refused(
                other,
                restoreCommand(),
                QemuArgs.RefusedException.class,
                "the snapshot's device state is from QEMU 7.1.0, this QEMU is 7.2",
                true);
        try (QemuRestore.Running r = QemuRestore.start(other, restoreCommand(), options(null, true), s -> {})) {
            assertThat(r.process().isAlive()).isTrue();
            try (Qmp q = Qmp.connect(r.qmpSocket(), Duration.ofSeconds(5))) {
                assertThat(q.execute("query-status", Map.of()).path("status").asString(""))
                        .isEqualTo("running");
            }
        }
    }

    @Test
    void aQemuThatDiesWhileLoadingIsReportedWithItsStatusAndError() throws Exception {
        QemuVm.assumeQemu();
        // the device state has a virtio-rng device this QEMU lacks: QEMU's load fails and it exits
        List<String> without = List.of(LinuxGuest.QEMU, "-accel", "tcg", "-nodefaults", "-display", "none");
        Path ramDir = Files.createDirectories(dir.resolve("ram"));
        long before = children();
        assertThatThrownBy(() -> QemuRestore.start(snap, without, options(ramDir, false), s -> {}))
                .isInstanceOf(QemuRestore.QemuExitedException.class)
                .hasMessageMatching("QEMU exited with status [1-9][0-9]* during the restore: .*(virtio-rng|section).*");
        assertThat(children()).isEqualTo(before);
        try (var files = Files.list(ramDir)) {
            assertThat(files.toList()).isEmpty();
        }
        // and a QEMU that cannot start at all
        assertThatThrownBy(() -> QemuRestore.start(
                        snap, List.of(LinuxGuest.QEMU, "-no-such-option"), options(ramDir, false), s -> {}))
                .isInstanceOf(QemuRestore.QemuExitedException.class)
                .hasMessageContaining("no-such-option");
        assertThat(children()).isEqualTo(before);
    }

    /** {@code from} again as {@code to}, its QEMU record edited. */
    static void rewriteMeta(Path from, Path to, java.util.function.UnaryOperator<QemuMeta> edit) throws IOException {
        rewrite(
                from,
                to,
                a -> a.put(
                        QemuMeta.ATTACHMENT,
                        edit.apply(QemuMeta.fromText(a.get(QemuMeta.ATTACHMENT)))
                                .toText()));
    }

    /** {@code m} with another QEMU version and other machine aliases. */
    static QemuMeta edited(QemuMeta m, String version, List<String> aliases) {
        return new QemuMeta(
                version,
                m.qemuPackage(),
                m.machine(),
                m.ramId(),
                m.ramSize(),
                m.ramBackend(),
                m.deviceStateBytes(),
                aliases);
    }

    /** Writes {@code from} again as {@code to} with its attachments edited by {@code edit}. */
    static void rewrite(Path from, Path to, java.util.function.Consumer<java.util.SequencedMap<String, byte[]>> edit)
            throws IOException {
        try (Snapshot s = Snapshot.open(from)) {
            var a = s.attachments();
            edit.accept(a);
            SnapshotWriter.pack(s, to, Codec.NONE, new long[0], a, b -> {});
        }
    }
}
