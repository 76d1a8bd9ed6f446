package dev.gmem.attack;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.SnapshotFormat;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.GmemProcess.Result;
import dev.gmem.testing.Host;
import dev.gmem.testing.Leaks;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.Timeout;

/**
 * gmem's own attack suite: real gmem processes against damaged snapshots, special files, signals at
 * random moments, a full file system, concurrent writers, planted links and an unprivileged user.
 * Every case asserts the exit status, that a failure is one line on stderr without a stack trace,
 * that the JVM did not crash (no hs_err file), that nothing is left behind (no partial file), and
 * that an exit 0 produced exactly the right output. Seeded: the seed is printed, and
 * {@code -Dgmem.attack.seed=N} replays a run.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class AttackSuiteTest {
    static final Duration LIMIT = Duration.ofSeconds(60);
    static final long SIZE = 4L << 20;

    final long seed = Long.getLong("gmem.attack.seed", System.nanoTime() & 0xFFFF_FFFFL);
    final Map<String, AtomicInteger> cases = new TreeMap<>();
    Path root;
    Path rawA;
    Path rawB;
    Path snapA;
    Path snapB;
    Path snapPlain;

    @BeforeAll
    void fixtures() throws Exception {
        System.out.println("attack suite: seed " + seed
                + " (replay with ./gmem test -Dtest=AttackSuiteTest -Dgmem.attack.seed=" + seed + ")");
        root = Files.createTempDirectory("gmem-attack");
        Files.setPosixFilePermissions(root, PosixFilePermissions.fromString("rwxr-xr-x"));
        Path fix = Files.createDirectory(root.resolve("fixtures"));
        rawA = Fixtures.raw(fix, "a.raw", SIZE, seed);
        rawB = Fixtures.raw(fix, "b.raw", SIZE, seed + 1);
        snapA = Fixtures.pack(rawA, fix.resolve("a.snap"), dev.gmem.snapshot.Codec.ZSTD);
        snapB = Fixtures.pack(rawB, fix.resolve("b.snap"), dev.gmem.snapshot.Codec.ZSTD);
        snapPlain = Fixtures.pack(rawA, fix.resolve("a-plain.snap"), dev.gmem.snapshot.Codec.NONE);
    }

    @AfterAll
    void summary() throws IOException {
        int total = cases.values().stream().mapToInt(AtomicInteger::get).sum();
        System.out.println("attack suite: seed " + seed + ", " + total + " gmem runs: " + cases + "; " + refusals.size()
                + " distinct refusals of damaged snapshots");
        Host.removeTree(root);
    }

    // ---- the checks every case makes ----

    /** A new empty directory for one case. */
    Path caseDir(String name) throws IOException {
        Path d = Files.createTempDirectory(root, name + "-");
        Files.setPosixFilePermissions(d, PosixFilePermissions.fromString("rwxrwxrwx"));
        try {
            exec(
                    "chmod",
                    "1777",
                    d.toString()); // shared and sticky, as /tmp: another user can plant files, never remove them
        } catch (Exception e) {
            throw new IOException(e);
        }
        return d;
    }

    Result gmem(String category, Path dir, String... args) throws IOException {
        return gmem(category, dir, List.of(), GmemProcess.classPath(), args);
    }

    Result gmem(String category, Path dir, List<String> prefix, String classPath, String... args) throws IOException {
        cases.computeIfAbsent(category, k -> new AtomicInteger()).incrementAndGet();
        long t0 = System.nanoTime();
        Result r = GmemProcess.start(dir, prefix, classPath, args).await(LIMIT);
        long ms = (System.nanoTime() - t0) / 1_000_000;
        // a run this slow is worth a look even when it passes: the seed and the command replay it
        if (ms > 10_000)
            System.out.println("attack suite: seed " + seed + ": " + ms + " ms for " + String.join(" ", args));
        return r;
    }

    /** What every run must satisfy: no hang, an allowed status, a failure as one clean line, no crash log, no partial file. */
    static void clean(Result r, Path dir, String what, int... allowed) throws IOException {
        assertThat(r.timedOut()).as("%s: hung%n%s", what, r).isFalse();
        assertThat(Arrays.stream(allowed).boxed().toList())
                .as("%s: exit status%n%s", what, r)
                .contains(r.exit());
        if (r.exit() == 0) {
            assertThat(r.errLines())
                    .as("%s: nothing on stderr on success (it is no terminal)%n%s", what, r)
                    .isEmpty();
        } else {
            assertThat(r.errLines()).as("%s: one line on stderr%n%s", what, r).hasSize(1);
            String line = r.errLines().get(0);
            assertThat(line)
                    .as("%s: a gmem message%n%s", what, r)
                    .startsWith("gmem")
                    .doesNotContain("\tat ")
                    .doesNotContain("Exception")
                    .doesNotContain("java.lang");
        }
        assertThat(GmemProcess.crashLogs(dir))
                .as("%s: the JVM crashed%n%s", what, r)
                .isEmpty();
        assertThat(Leaks.partials(dir))
                .as("%s: a partial file was left behind%n%s", what, r)
                .isEmpty();
    }

    /**
     * The same bytes, read only where either file holds data (SEEK_DATA): both may be terabytes of
     * holes, a guest a forged manifest made large, which a read of every byte would take hours over.
     */
    static void sameBytes(Path actual, Path expected, String what) throws IOException {
        long size = Files.size(expected);
        assertThat(Files.size(actual))
                .as("%s: an exit 0 must mean the right size", what)
                .isEqualTo(size);
        for (Path[] p : new Path[][] {{actual, expected}, {expected, actual}}) {
            try (dev.gmem.linux.Fd data = dev.gmem.linux.Fd.open(
                            p[0], dev.gmem.linux.Linux.O_RDONLY | dev.gmem.linux.Linux.O_CLOEXEC, 0);
                    var a = java.nio.channels.FileChannel.open(p[0]);
                    var b = java.nio.channels.FileChannel.open(p[1])) {
                long at = 0;
                while (at < size) {
                    long start;
                    try {
                        start = data.lseek(at, dev.gmem.linux.Linux.SEEK_DATA);
                    } catch (dev.gmem.linux.SyscallException e) {
                        if (e.is(dev.gmem.linux.Errno.ENXIO)) break; // holes to the end
                        throw e;
                    }
                    long end = data.lseek(start, dev.gmem.linux.Linux.SEEK_HOLE);
                    for (long o = start; o < end; o += 1 << 20) {
                        int n = (int) Math.min(1 << 20, end - o);
                        java.nio.ByteBuffer x = java.nio.ByteBuffer.allocate(n);
                        java.nio.ByteBuffer y = java.nio.ByteBuffer.allocate(n);
                        while (x.hasRemaining() && a.read(x, o + x.position()) > 0) {}
                        while (y.hasRemaining() && b.read(y, o + y.position()) > 0) {}
                        int m = java.util.Arrays.mismatch(x.array(), y.array());
                        assertThat(m)
                                .as("%s: an exit 0 must mean the right bytes (they differ at offset %d)", what, o + m)
                                .isEqualTo(-1);
                    }
                    at = end;
                }
            }
        }
    }

    // ---- damaged snapshots ----

    /** What is damaged, and how often per run: the semantic kinds more often, as they reach deeper checks. */
    enum Damage {
        HEADER_BIT(3),
        HEADER_FIELD_CRC_FIXED(6),
        DATA_BIT(3),
        MANIFEST_BIT(3),
        ANY_BYTES(3),
        MAGIC(2),
        TRUNCATED(3),
        EXTENDED(2),
        MANIFEST_FIELDS(12);

        final int draws;

        Damage(int draws) {
            this.draws = draws;
        }
    }

    /** The first line of every refusal in the damaged cases, with numbers and paths taken out: how many different checks were reached. */
    final java.util.Set<String> refusals = java.util.concurrent.ConcurrentHashMap.newKeySet();

    /** Each kind of damage three times, drawn from the seed; each damaged file through verify, eager restore, unpack, and some through a lazy restore. */
    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void damagedSnapshotsAreRefusedInOneLineOrRestoreExactly() throws Exception {
        SplittableRandom r = new SplittableRandom(seed);
        List<Case> work = new ArrayList<>();
        for (Damage kind : Damage.values()) {
            for (int round = 0; round < kind.draws; round++) {
                Path source = r.nextBoolean() ? snapA : snapPlain;
                byte[] bad = damage(Files.readAllBytes(source), kind, r);
                boolean lazyToo = round < 2;
                String name = kind.name().toLowerCase() + "-" + round;
                // with every checksum made right again the file may be a sound snapshot of other memory: then the
                // readers must agree
                boolean forged = kind == Damage.MANIFEST_FIELDS || kind == Damage.HEADER_FIELD_CRC_FIXED;
                work.add(new Case(name, () -> damagedCase(name, bad, lazyToo, forged)));
            }
        }
        runAll(work);
        // the damage reached many different checks, not the same first refusal every time
        assertThat(refusals).as("distinct refusals: %s", refusals).hasSizeGreaterThanOrEqualTo(8);
    }

    static byte[] damage(byte[] good, Damage kind, SplittableRandom r) {
        byte[] b = good.clone();
        long[] manifest = Fixtures.manifestPlace(good);
        int mOff = (int) manifest[0];
        int mLen = (int) manifest[1];
        switch (kind) {
            case HEADER_BIT -> flip(b, r.nextInt(SnapshotFormat.HEADER_SIZE), r);
            case HEADER_FIELD_CRC_FIXED -> {
                // a defined header field (version, sizes, the manifest's place and checksum), the header's own checksum
                // made right again
                flip(b, 8 + r.nextInt(28), r);
                Fixtures.fixHeaderChecksum(b);
            }
            case DATA_BIT -> flip(b, SnapshotFormat.HEADER_SIZE + r.nextInt(mOff - SnapshotFormat.HEADER_SIZE), r);
            case MANIFEST_BIT -> flip(b, mOff + r.nextInt(mLen), r);
            case ANY_BYTES -> {
                for (int k = 1 + r.nextInt(16); k > 0; k--) b[r.nextInt(b.length)] = (byte) r.nextInt(256);
            }
            case MAGIC -> b[r.nextInt(8)] ^= (byte) (1 + r.nextInt(255));
            case TRUNCATED ->
                b = Arrays.copyOf(
                        b,
                        r.nextBoolean()
                                ? r.nextInt(b.length)
                                : (r.nextInt(b.length / 4096) + 1) * 4096 - (r.nextBoolean() ? 0 : 4096));
            case EXTENDED -> {
                byte[] longer = Arrays.copyOf(b, b.length + 1 + r.nextInt(3 * 4096));
                for (int i = b.length; i < longer.length; i++) longer[i] = (byte) r.nextInt(256);
                b = longer;
            }
            case MANIFEST_FIELDS -> {
                // semantic damage behind recomputed checksums: sizes, offsets and counts with values chosen to hurt
                long[] hurt = {
                    0, 1, -1, 4095, 4096, 1L << 40, 1L << 52, Long.MAX_VALUE, Integer.MAX_VALUE, Integer.MIN_VALUE
                };
                b = Fixtures.editManifest(good, m -> {
                    for (int k = 1 + r.nextInt(3); k > 0; k--) {
                        int at = r.nextInt(m.limit() - 8);
                        at -= at % 4;
                        if (r.nextBoolean()) m.putLong(at, hurt[r.nextInt(hurt.length)]);
                        else m.putInt(at, (int) hurt[r.nextInt(hurt.length)]);
                    }
                });
            }
        }
        return b;
    }

    private static void flip(byte[] b, int at, SplittableRandom r) {
        b[at] ^= (byte) (1 << r.nextInt(8));
    }

    /**
     * A damaged file through every reader. Damage that breaks a checksum must be refused or be
     * harmless (the original bytes). A {@code forged} file, its checksums recomputed, may instead be
     * a sound snapshot of other memory (a larger region of holes, say): nothing can tell it from a
     * genuine one, so every reader must then give the same guest (the eager restore's and unpack's
     * bytes equal, the lazy restore's readers find no page that differs from the file).
     */
    private void damagedCase(String name, byte[] bad, boolean lazyToo, boolean forged) throws Exception {
        Path dir = caseDir("damaged-" + name);
        Path f = dir.resolve("in.snap");
        Files.write(f, bad);
        String what = "damage " + name;

        Result verify = gmem("damaged snapshots", dir, "snapshot", "verify", f.toString());
        clean(verify, dir, what + ", verify", 0, 1, 4);

        Path export = dir.resolve("export.mem");
        Result restore = gmem("damaged snapshots", dir, "restore", f.toString(), "--export", export.toString());
        clean(restore, dir, what + ", restore", 0, 1, 3, 4);
        if (restore.exit() != 0)
            assertThat(export).as(what + ": a failed restore exports nothing").doesNotExist();
        else if (!forged) sameBytes(export, rawA, what + ", restore");

        Path unpacked = dir.resolve("unpacked.raw");
        Result unpack = gmem("damaged snapshots", dir, "snapshot", "unpack", f.toString(), "-o", unpacked.toString());
        clean(unpack, dir, what + ", unpack", 0, 1, 3, 4);
        if (unpack.exit() == 0 && forged && restore.exit() == 3) // a guest too large to restore here, or to compare
        assertThat(Files.size(unpacked)).as(what + ", unpack: the forged size").isGreaterThan(Files.size(rawA));
        else if (unpack.exit() == 0)
            sameBytes(unpacked, forged && restore.exit() == 0 ? export : rawA, what + ", unpack");
        else assertThat(unpacked).doesNotExist();

        // one verdict: what verify accepts every reader accepts, and what it refuses every reader refuses
        boolean accepted = verify.exit() == 0;
        agrees(restore, accepted, false, what + ": restore", verify);
        agrees(unpack, accepted, true, what + ": unpack", verify);
        for (Result refused : List.of(verify, restore, unpack)) {
            if (refused.exit() != 0)
                refusals.add(refused.errLines()
                        .get(0)
                        .replaceAll("/\\S+", "PATH")
                        .replaceAll("\\d+", "N")
                        .replaceFirst("^gmem \\w+: ", ""));
        }
        if (lazyToo && Host.hasUserfaultfd()) {
            Result lazy = gmem("damaged snapshots", dir, "restore", f.toString(), "--mode", "lazy", "--verify");
            clean(lazy, dir, what + ", lazy restore", 0, 1, 3, 4);
            agrees(lazy, accepted, false, what + ": lazy restore", verify);
        }
        Host.removeTree(dir);
    }

    /**
     * A reader gives verify's verdict, or refuses as this host's limit. The format allows a guest of
     * 4 PiB, so a forged manifest can make a sound snapshot that no heap here holds the page state of
     * (restore) and no disk file system holds (unpack: ext4 files end at 16 TiB). That refusal is exit
     * 3 naming the limit, which is no verdict on the input; exit 3 is never anything else. A reader
     * that checks every chunk first ({@code checksFirst}: unpack) meets the limit only in a file
     * verify accepted; a restore meets it before it reads any data, so in a refused file too.
     */
    private static void agrees(Result reader, boolean accepted, boolean checksFirst, String what, Result verify) {
        boolean hostLimit = reader.exit() == 3
                && reader.errLines().size() == 1
                && (reader.errLines().get(0).contains("of page state, more than half the Java heap")
                        || reader.errLines().get(0).contains("(EFBIG, File too large)"));
        if (reader.exit() == 3)
            assertThat(hostLimit)
                    .as("%s: exit 3 is the host's limit%n%s", what, reader)
                    .isTrue();
        if (hostLimit && checksFirst)
            assertThat(accepted)
                    .as("%s: the limit after every chunk was checked%n%s%n%s", what, verify, reader)
                    .isTrue();
        if (hostLimit) return;
        assertThat(reader.exit() == 0)
                .as("%s agrees with verify%n%s%n%s", what, verify, reader)
                .isEqualTo(accepted);
    }

    // ---- special files ----

    /** Inputs that are not regular files, or not there: refused in one line, and nothing waits on a FIFO. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void specialInputsAreRefusedByName() throws Exception {
        Path dir = caseDir("special-in");
        Path fifo = dir.resolve("fifo");
        exec("mkfifo", fifo.toString());
        Path socket = dir.resolve("socket");
        try (var ch = java.nio.channels.ServerSocketChannel.open(java.net.StandardProtocolFamily.UNIX)) {
            ch.bind(java.net.UnixDomainSocketAddress.of(socket));
        }
        Path dangling = Files.createSymbolicLink(dir.resolve("dangling"), dir.resolve("nowhere"));
        Path loop = dir.resolve("loop");
        Files.createSymbolicLink(loop, loop);
        Path empty = Files.createFile(dir.resolve("empty"));
        Path text = Files.writeString(dir.resolve("order.txt"), "not an address\n");
        List<Path> inputs =
                new ArrayList<>(List.of(dir, fifo, socket, dangling, loop, empty, dir.resolve("missing"), text));
        for (Path in : inputs) {
            for (String[] cmd : List.of(
                    new String[] {"snapshot", "verify", in.toString()},
                    new String[] {"restore", in.toString()},
                    new String[] {
                        "snapshot",
                        "pack",
                        in.toString(),
                        "-o",
                        dir.resolve("out.snap").toString()
                    })) {
                Result r = gmem("special files", dir, cmd);
                boolean rawText =
                        in.equals(text) && !cmd[0].equals("snapshot") || in.equals(text) && cmd[1].equals("pack");
                if (rawText) {
                    // a 15-byte file is no raw memory image (not a multiple of 4096)
                    clean(r, dir, String.join(" ", cmd), 4);
                } else {
                    clean(r, dir, String.join(" ", cmd), 1, 4);
                }
                if (r.exit() != 0)
                    assertThat(r.errLines().get(0))
                            .as("names the file: %s", r)
                            .contains(in.getFileName().toString());
            }
        }
        assertThat(dir.resolve("out.snap")).doesNotExist();
        Host.removeTree(dir);
    }

    /** Outputs that are not regular files, that are the input, or planted links: refused, and what was there is intact. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void specialOutputsAreRefusedAndLeftIntact() throws Exception {
        Path dir = caseDir("special-out");
        Path victim = Files.writeString(dir.resolve("victim.txt"), "precious\n");
        Path fifo = dir.resolve("fifo");
        exec("mkfifo", fifo.toString());
        Path link = Files.createSymbolicLink(dir.resolve("planted.link"), victim);
        Path subdir = Files.createDirectory(dir.resolve("a-directory"));
        Path input = Files.copy(snapA, dir.resolve("in.snap"));
        Path rawIn = Files.copy(rawA, dir.resolve("in.raw"));
        Path hardLink = Files.createLink(dir.resolve("in-hardlink.snap"), input);
        List<Path> outputs = new ArrayList<>(List.of(fifo, link, subdir));
        for (Path out : outputs) {
            for (String[] cmd : List.of(
                    new String[] {"snapshot", "pack", rawIn.toString(), "-o", out.toString()},
                    new String[] {"snapshot", "unpack", input.toString(), "-o", out.toString()},
                    new String[] {"image", "synth", "--size", "1M", "-o", out.toString()},
                    new String[] {"restore", input.toString(), "--export", out.toString()})) {
                Result r = gmem("special files", dir, cmd);
                clean(r, dir, String.join(" ", cmd), 1, 4);
            }
        }
        // the input as its own output, by name and by hard link
        for (String[] cmd : List.of(
                new String[] {"snapshot", "unpack", input.toString(), "-o", input.toString()},
                new String[] {"snapshot", "unpack", input.toString(), "-o", hardLink.toString()},
                new String[] {"snapshot", "pack", input.toString(), "-o", input.toString()},
                new String[] {"snapshot", "pack", rawIn.toString(), "-o", rawIn.toString()},
                new String[] {
                    "snapshot",
                    "pack",
                    rawIn.toString(),
                    "-o",
                    Files.createLink(dir.resolve("raw-hardlink"), rawIn).toString()
                })) {
            Result r = gmem("special files", dir, cmd);
            clean(r, dir, String.join(" ", cmd), 1, 2, 4);
        }
        // an empty name is a usage error
        clean(gmem("special files", dir, "restore", input.toString(), "--export", ""), dir, "--export ''", 2);
        clean(gmem("special files", dir, "snapshot", "pack", rawIn.toString(), "-o", ""), dir, "pack -o ''", 2);
        clean(gmem("special files", dir, "snapshot", "unpack", "", "-o", "x"), dir, "unpack ''", 2);

        assertThat(Files.readString(victim)).isEqualTo("precious\n");
        assertThat(Files.isSymbolicLink(link)).isTrue();
        assertThat(Files.isDirectory(subdir, LinkOption.NOFOLLOW_LINKS)).isTrue();
        assertThat(exec("test", "-p", fifo.toString())).isZero();
        sameBytes(input, snapA, "the input");
        sameBytes(rawIn, rawA, "the raw input");
        Host.removeTree(dir);
    }

    /** A device node (the null device, made here) as every command's input and output: refused, and the node left a device. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void deviceNodesAreRefusedAsInputsAndOutputs() throws Exception {
        Assumptions.assumeTrue(Host.isRoot(), "making a device node (mknod) needs root");
        Path dir = caseDir("device");
        Path device = dir.resolve("null-device");
        Assumptions.assumeTrue(
                exec("mknod", device.toString(), "c", "1", "3") == 0,
                "mknod is refused here (a container without CAP_MKNOD?)");
        Path input = Files.copy(snapA, dir.resolve("in.snap"));
        for (String[] cmd : List.of(
                new String[] {"snapshot", "verify", device.toString()},
                new String[] {"restore", device.toString()},
                new String[] {
                    "snapshot",
                    "pack",
                    device.toString(),
                    "-o",
                    dir.resolve("out.snap").toString()
                },
                new String[] {"snapshot", "pack", rawA.toString(), "-o", device.toString()},
                new String[] {"snapshot", "unpack", input.toString(), "-o", device.toString()},
                new String[] {"image", "synth", "--size", "1M", "-o", device.toString()},
                new String[] {"restore", input.toString(), "--export", device.toString()})) {
            Result r = gmem("special files", dir, cmd);
            clean(r, dir, String.join(" ", cmd), 1, 4);
            assertThat(r.errLines().get(0)).as("names the node: %s", r).contains("null-device");
        }
        assertThat(exec("test", "-c", device.toString()))
                .as("the device node is untouched")
                .isZero();
        assertThat(dir.resolve("out.snap")).doesNotExist();
        Host.removeTree(dir);
    }

    // ---- signals at random moments ----

    /**
     * Writers interrupted while they work: either they finished (and their output is exactly right)
     * or they say "interrupted", exit 128+n and leave nothing. Half the rounds are certain to
     * interrupt: the writer is stopped (SIGSTOP) as soon as its partial file exists, sent the signal,
     * and continued. The other half signal at a moment drawn from the seed.
     */
    @Test
    @Timeout(value = 10, unit = TimeUnit.MINUTES)
    void signalsAtRandomMomentsLeaveNothingBehind() throws Exception {
        SplittableRandom r = new SplittableRandom(seed * 31 + 7);
        Path fix = root.resolve("fixtures");
        Path big = fix.resolve("big.raw");
        Path bigSnap = fix.resolve("big.snap");
        Path synthRef = fix.resolve("synth-ref.raw");
        if (!Files.exists(bigSnap)) {
            Fixtures.raw(fix, "big.raw", 256L << 20, seed);
            Fixtures.pack(big, bigSnap, dev.gmem.snapshot.Codec.ZSTD);
            clean(
                    gmem("signals", fix, "image", "synth", "--size", "512M", "--seed", "3", "-o", synthRef.toString()),
                    fix,
                    "the synth reference",
                    0);
        }
        String[][] signals = {{"INT", "130"}, {"TERM", "143"}, {"HUP", "129"}};
        Map<String, Integer> interrupted = new TreeMap<>();
        for (int round = 0; round < 10; round++) {
            Path dir = caseDir("signal-" + round);
            Path out = dir.resolve("out");
            int kind = round % 5;
            boolean certain = round < 5 && kind != 4; // a lazy restore writes no partial file to wait for
            String[] cmd = switch (kind) {
                case 0 -> new String[] {"image", "synth", "--size", "512M", "--seed", "3", "-o", out.toString()};
                case 1 -> new String[] {"snapshot", "pack", big.toString(), "-o", out.toString()};
                case 2 -> new String[] {"snapshot", "unpack", bigSnap.toString(), "-o", out.toString()};
                case 3 -> new String[] {"restore", bigSnap.toString(), "--export", out.toString(), "--verify"};
                default -> new String[] {"restore", bigSnap.toString(), "--mode", "lazy", "--verify"};
            };
            if (kind == 4 && !Host.hasUserfaultfd()) continue;
            String[] sig = signals[r.nextInt(signals.length)];
            String what =
                    (certain ? "SIG" + sig[0] + " while stopped, to " : "SIG" + sig[0] + " at a random moment, to ")
                            + String.join(" ", cmd);
            cases.computeIfAbsent("signals", k -> new AtomicInteger()).incrementAndGet();
            GmemProcess.Started p = GmemProcess.start(dir, List.of(), GmemProcess.classPath(), cmd);
            Result res;
            boolean stoppedMidWrite = false;
            try {
                // once it works (its partial file exists, or a lazy restore has started)
                long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                while (p.process().isAlive()
                        && System.nanoTime() < deadline
                        && Leaks.partials(dir).isEmpty()
                        && !(kind == 4 && startedLazy(p))) {
                    Thread.sleep(2);
                }
                String pid = Long.toString(p.process().pid());
                if (certain) {
                    exec("kill", "-STOP", pid);
                    stoppedMidWrite = !Leaks.partials(dir).isEmpty(); // still writing, and it cannot finish now
                    exec("kill", "-" + sig[0], pid);
                    exec("kill", "-CONT", pid);
                } else {
                    Thread.sleep(r.nextInt(600));
                    exec("kill", "-" + sig[0], pid);
                }
                res = p.await(LIMIT);
            } finally {
                p.process().destroyForcibly();
                p.process().waitFor(10, TimeUnit.SECONDS);
            }
            clean(res, dir, what, 0, Integer.parseInt(sig[1]));
            if (res.exit() != 0) {
                assertThat(res.errLines().get(0)).as(what).startsWith("gmem: interrupted (SIG" + sig[0] + ")");
                interrupted.merge(new String[] {"synth", "pack", "unpack", "export", "lazy"}[kind], 1, Integer::sum);
            }
            if (stoppedMidWrite)
                assertThat(res.exit())
                        .as("%s: stopped mid-write, so interrupted%n%s", what, res)
                        .isEqualTo(Integer.parseInt(sig[1]));
            // an output under its name is whole, whatever the status: a signal after the commit leaves the finished
            // file
            if (kind == 4) {
                assertThat(out).as("a lazy restore writes no file").doesNotExist();
            } else if (Files.exists(out, LinkOption.NOFOLLOW_LINKS)) {
                switch (kind) {
                    case 0 -> sameBytes(out, synthRef, what);
                    case 1 -> {
                        Path back = dir.resolve("back.raw");
                        clean(
                                gmem("signals", dir, "snapshot", "unpack", out.toString(), "-o", back.toString()),
                                dir,
                                what + ": unpacking the output",
                                0);
                        sameBytes(back, big, what);
                    }
                    default -> sameBytes(out, big, what);
                }
            } else {
                assertThat(res.exit()).as(what + ": exit 0 without its output").isNotZero();
            }
            Host.removeTree(dir);
        }
        System.out.println("attack suite: interrupted " + interrupted);
        assertThat(interrupted.keySet())
                .as("every writer was interrupted at least once")
                .contains("synth", "pack", "unpack", "export");
    }

    private static boolean startedLazy(GmemProcess.Started p) {
        // a lazy restore with --verify prints its report at the end; its threads exist from the start
        return p.process()
                .toHandle()
                .info()
                .totalCpuDuration()
                .map(d -> d.toMillis() > 400)
                .orElse(false);
    }

    // ---- a full file system ----

    /** Every writer on a 8 MiB tmpfs, mounted in a mount namespace of the child's own: ENOSPC in one line, and the file system left empty. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void aFullFileSystemIsOneLineAndLeavesItEmpty() throws Exception {
        Assumptions.assumeTrue(Host.isRoot(), "a tmpfs of its own needs root (unshare -m, mount)");
        Assumptions.assumeTrue(exec("unshare", "-m", "true") == 0, "unshare -m is refused here");
        Path big = root.resolve("fixtures/full.raw");
        Path bigSnap = root.resolve("fixtures/full.snap");
        if (!Files.exists(bigSnap)) {
            Fixtures.raw(root.resolve("fixtures"), "full.raw", 48L << 20, seed);
            Fixtures.pack(big, bigSnap, dev.gmem.snapshot.Codec.NONE);
        }
        Path dir = caseDir("full");
        Path mnt = Files.createDirectory(dir.resolve("small"));
        List<String[]> cmds = new ArrayList<>();
        for (String strategy : List.of("write", "mapped-copy", "populate-copy")) {
            cmds.add(new String[] {
                "restore",
                bigSnap.toString(),
                "--strategy",
                strategy,
                "--export",
                mnt.resolve("x.mem").toString()
            });
        }
        cmds.add(new String[] {
            "snapshot", "unpack", bigSnap.toString(), "-o", mnt.resolve("x.raw").toString()
        });
        cmds.add(new String[] {
            "snapshot", "pack", big.toString(), "-o", mnt.resolve("x.snap").toString()
        });
        cmds.add(new String[] {
            "image", "synth", "--size", "64M", "-o", mnt.resolve("x.raw").toString()
        });
        for (String[] cmd : cmds) {
            // the shell mounts, runs gmem, then lists what is left on the tmpfs: the mount ends with the namespace
            List<String> prefix = List.of(
                    "unshare",
                    "-m",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount -t tmpfs -o size=8m gmem-attack \"$0\" || exit 99; \"$@\"; rc=$?; echo LEFT: $(ls -A \"$0\"); exit $rc",
                    mnt.toString());
            Result r = gmem("full file system", dir, prefix, GmemProcess.classPath(), cmd);
            String what = "ENOSPC: " + String.join(" ", cmd);
            assertThat(r.exit()).as("%s: the tmpfs mounted%n%s", what, r).isNotEqualTo(99);
            clean(r, dir, what, 1);
            assertThat(r.errLines().get(0)).as(what).containsAnyOf("ENOSPC", "no space left");
            assertThat(r.out().lines().filter(l -> l.startsWith("LEFT:")).toList())
                    .as(what + ": nothing left on the full file system")
                    .containsExactly("LEFT:");
        }
        Host.removeTree(dir);
    }

    // ---- concurrent writers ----

    /** Two writers of different contents to one name at once: each exits 0 or loses in one line, and the name holds exactly one winner's output. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void concurrentWritersNeverMixTheirOutputs() throws Exception {
        for (int round = 0; round < 2; round++) {
            for (String kind : List.of("pack", "unpack", "export")) {
                Path dir = caseDir("race-" + kind + "-" + round);
                Path out = dir.resolve("out");
                String[][] cmds = switch (kind) {
                    case "pack" ->
                        new String[][] {
                            {"snapshot", "pack", rawA.toString(), "-o", out.toString()},
                            {"snapshot", "pack", rawB.toString(), "-o", out.toString()}
                        };
                    case "unpack" ->
                        new String[][] {
                            {"snapshot", "unpack", snapA.toString(), "-o", out.toString()},
                            {"snapshot", "unpack", snapB.toString(), "-o", out.toString()}
                        };
                    default ->
                        new String[][] {
                            {"restore", snapA.toString(), "--export", out.toString()},
                            {"restore", snapB.toString(), "--export", out.toString()}
                        };
                };
                cases.computeIfAbsent("concurrent writers", k -> new AtomicInteger())
                        .addAndGet(2);
                Result ra;
                Result rb;
                GmemProcess.Started a = GmemProcess.start(dir, List.of(), GmemProcess.classPath(), cmds[0]);
                GmemProcess.Started b = null;
                try {
                    if (round == 0) {
                        // a certain overlap: A is stopped with its partial file open while B runs to its end, then A
                        // goes on
                        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
                        while (a.process().isAlive() && Leaks.partials(dir).isEmpty() && System.nanoTime() < deadline)
                            Thread.sleep(1);
                        exec("kill", "-STOP", Long.toString(a.process().pid()));
                        // (stopped between its link into place and its partial's removal, A has committed already)
                        boolean overlapped = !Leaks.partials(dir).isEmpty() && !Files.exists(out);
                        b = GmemProcess.start(dir, List.of(), GmemProcess.classPath(), cmds[1]);
                        rb = b.await(LIMIT);
                        exec("kill", "-CONT", Long.toString(a.process().pid()));
                        ra = a.await(LIMIT);
                        if (overlapped) {
                            assertThat(rb.exit())
                                    .as("%s: B ran alone to its end%n%s", kind, rb)
                                    .isZero();
                            assertThat(ra.exit())
                                    .as("%s: A finds the name taken by B meanwhile%n%s", kind, ra)
                                    .isEqualTo(1);
                        }
                    } else {
                        b = GmemProcess.start(dir, List.of(), GmemProcess.classPath(), cmds[1]);
                        ra = a.await(LIMIT);
                        rb = b.await(LIMIT);
                    }
                } finally {
                    for (GmemProcess.Started p : new GmemProcess.Started[] {a, b}) {
                        if (p == null) continue;
                        p.process().destroyForcibly();
                        p.process().waitFor(10, TimeUnit.SECONDS);
                    }
                }
                clean(ra, dir, kind + " A", 0, 1);
                clean(rb, dir, kind + " B", 0, 1);
                assertThat(ra.exit() == 0 || rb.exit() == 0)
                        .as("%s: someone wins%n%s%n%s", kind, ra, rb)
                        .isTrue();
                Path[] expected = switch (kind) {
                    case "pack" -> new Path[] {null, null};
                    default -> new Path[] {rawA, rawB};
                };
                if (kind.equals("pack")) {
                    // a snapshot, sound, of one of the two inputs
                    Path back = dir.resolve("back.raw");
                    Result u = gmem(
                            "concurrent writers", dir, "snapshot", "unpack", out.toString(), "-o", back.toString());
                    clean(u, dir, "unpack of the race's winner", 0);
                    assertThat(Files.mismatch(back, rawA) == -1 || Files.mismatch(back, rawB) == -1)
                            .as("pack: one input, whole")
                            .isTrue();
                } else {
                    boolean isA = Files.mismatch(out, expected[0]) == -1;
                    boolean isB = Files.mismatch(out, expected[1]) == -1;
                    assertThat(isA || isB)
                            .as("%s: the name holds one writer's output, whole", kind)
                            .isTrue();
                    if (kind.equals("export")) {
                        // an export never replaces: exactly one wins, the other is told the name exists, and the file
                        // is the winner's
                        assertThat(ra.exit() + rb.exit())
                                .as("export: one wins, one loses%n%s%n%s", ra, rb)
                                .isEqualTo(1);
                        assertThat(isA).isEqualTo(ra.exit() == 0);
                        String loser = ra.exit() == 0
                                ? rb.errLines().get(0)
                                : ra.errLines().get(0);
                        assertThat(loser).containsAnyOf("exists", "another writer");
                    }
                }
                Host.removeTree(dir);
            }
        }
    }

    /** Two demos at once in one directory: each works in a directory of its own, both succeed, and nothing is left. */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void twoDemosAtOnceShareNoFile() throws Exception {
        Path dir = caseDir("demos");
        cases.computeIfAbsent("concurrent writers", k -> new AtomicInteger()).addAndGet(2);
        GmemProcess.Started a = GmemProcess.start(
                dir, List.of(), GmemProcess.classPath(), "demo", "--size", "8M", "--dir", dir.toString(), "--json");
        GmemProcess.Started b = GmemProcess.start(
                dir, List.of(), GmemProcess.classPath(), "demo", "--size", "8M", "--dir", dir.toString(), "--json");
        Result ra;
        Result rb;
        try {
            ra = a.await(LIMIT);
            rb = b.await(LIMIT);
        } finally {
            for (GmemProcess.Started p : List.of(a, b)) {
                p.process().destroyForcibly();
                p.process().waitFor(10, TimeUnit.SECONDS);
            }
        }
        clean(ra, dir, "demo A", 0);
        clean(rb, dir, "demo B", 0);
        try (var left = Files.list(dir)) {
            assertThat(left.toList()).as("the demos' directories are gone").isEmpty();
        }
        Host.removeTree(dir);
    }

    // ---- an unprivileged user ----

    /**
     * gmem run as nobody: an input it may not read and a directory it may not write are refused in
     * one line; a lazy restore either works or says why userfaultfd is refused to it. And root's
     * gmem refuses the link nobody planted in a shared sticky directory.
     */
    @Test
    @Timeout(value = 5, unit = TimeUnit.MINUTES)
    void anUnprivilegedUserGetsClearRefusalsAndCannotRedirectRoot() throws Exception {
        Assumptions.assumeTrue(Host.isRoot(), "needs root to run gmem as another user");
        Path dir = caseDir("nobody");
        // a copy of the class path that nobody can read (the build's may sit under /root)
        Path cp = Files.createDirectory(dir.resolve("cp"));
        List<String> entries = new ArrayList<>();
        int i = 0;
        for (String e : GmemProcess.classPath().split(java.io.File.pathSeparator)) {
            Path src = Path.of(e);
            if (!Files.exists(src)) continue;
            Path dst = cp.resolve((i++) + "-" + src.getFileName());
            if (Files.isDirectory(src)) copyTree(src, dst);
            else Files.copy(src, dst);
            entries.add(dst.toString());
        }
        exec("chmod", "-R", "a+rX", cp.toString());
        String nobodyCp = String.join(java.io.File.pathSeparator, entries);
        List<String> asNobody = List.of("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--");

        Path secret = Files.copy(snapA, dir.resolve("secret.snap"));
        Files.setPosixFilePermissions(secret, PosixFilePermissions.fromString("rw-------"));
        Path closed = Files.createDirectory(dir.resolve("closed"));
        Files.setPosixFilePermissions(closed, PosixFilePermissions.fromString("rwxr-xr-x"));
        Path open = Files.copy(snapA, dir.resolve("open.snap"));
        Files.setPosixFilePermissions(open, PosixFilePermissions.fromString("rw-r--r--"));

        Result read = gmem("unprivileged user", dir, asNobody, nobodyCp, "snapshot", "verify", secret.toString());
        clean(read, dir, "nobody reads a root-only snapshot", 1, 4);
        assertThat(read.errLines().get(0)).contains("secret.snap").containsIgnoringCase("permission denied");

        Result write = gmem(
                "unprivileged user",
                dir,
                asNobody,
                nobodyCp,
                "snapshot",
                "unpack",
                open.toString(),
                "-o",
                closed.resolve("x.raw").toString());
        clean(write, dir, "nobody writes into root's directory", 1, 4);
        assertThat(write.errLines().get(0)).contains("x.raw");
        assertThat(closed).isEmptyDirectory();

        Result lazy = gmem(
                "unprivileged user", dir, asNobody, nobodyCp, "restore", open.toString(), "--mode", "lazy", "--verify");
        clean(lazy, dir, "nobody restores lazily", 0, 3);
        if (lazy.exit() == 3) assertThat(lazy.errLines().get(0)).containsIgnoringCase("userfaultfd");

        Result probe = gmem("unprivileged user", dir, asNobody, nobodyCp, "probe", "--json");
        clean(probe, dir, "nobody probes", 0);

        // nobody plants links in a sticky shared directory; root's writers refuse them and the victim stays intact
        Path shared = caseDir("shared");
        Path victim = Files.writeString(dir.resolve("victim.txt"), "root's file\n");
        for (String name : List.of("out.snap", "out.raw", "out.mem")) {
            assertThat(exec(
                            asNobody,
                            "ln",
                            "-s",
                            victim.toString(),
                            shared.resolve(name).toString()))
                    .isZero();
        }
        clean(
                gmem(
                        "unprivileged user",
                        shared,
                        "snapshot",
                        "pack",
                        rawA.toString(),
                        "-o",
                        shared.resolve("out.snap").toString()),
                shared,
                "pack onto a planted link",
                1,
                4);
        clean(
                gmem(
                        "unprivileged user",
                        shared,
                        "snapshot",
                        "unpack",
                        snapA.toString(),
                        "-o",
                        shared.resolve("out.raw").toString()),
                shared,
                "unpack onto a planted link",
                1,
                4);
        clean(
                gmem(
                        "unprivileged user",
                        shared,
                        "restore",
                        snapA.toString(),
                        "--export",
                        shared.resolve("out.mem").toString()),
                shared,
                "export onto a planted link",
                1,
                4);
        assertThat(Files.readString(victim)).isEqualTo("root's file\n");
        Host.removeTree(shared);
        Host.removeTree(dir);
    }

    // ---- helpers ----

    @FunctionalInterface
    interface Callable {
        void call() throws Exception;
    }

    /** A named piece of work for {@link #runAll}. */
    record Case(String name, Callable body) {}

    /**
     * Runs the cases two at a time (this machine has two cores), and fails with the first failure.
     * Each case is bounded on its own, from its start: a case still running after {@code 6 * LIMIT}
     * fails the test with its name, how long each case took that ran, and the stack of each worker.
     */
    static void runAll(List<Case> work) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2, r -> new Thread(r, "attack-case"));
        Map<String, Long> started = new java.util.concurrent.ConcurrentHashMap<>();
        Map<String, Long> tookMs = new java.util.concurrent.ConcurrentHashMap<>();
        try {
            List<Future<?>> done = new ArrayList<>();
            for (Case c : work) {
                done.add(pool.submit(() -> {
                    long t0 = System.nanoTime();
                    started.put(c.name(), t0);
                    try {
                        c.body().call();
                    } finally {
                        started.remove(c.name());
                        tookMs.put(c.name(), (System.nanoTime() - t0) / 1_000_000);
                    }
                    return null;
                }));
            }
            long bound = LIMIT.toNanos() * 6;
            for (int i = 0; i < done.size(); i++) {
                Future<?> f = done.get(i);
                while (true) {
                    try {
                        f.get(1, TimeUnit.SECONDS);
                        break;
                    } catch (java.util.concurrent.TimeoutException e) {
                        long now = System.nanoTime();
                        for (var run : started.entrySet()) {
                            if (now - run.getValue() < bound) continue;
                            throw new AssertionError("case " + run.getKey() + " still runs after "
                                    + (now - run.getValue()) / 1_000_000_000 + " s; cases done (ms): " + tookMs
                                    + "; running: " + started.keySet() + stacksOf("attack-case"));
                        }
                    } catch (java.util.concurrent.ExecutionException e) {
                        if (e.getCause() instanceof Error err) throw err;
                        throw (Exception) e.getCause();
                    }
                }
            }
        } finally {
            pool.shutdownNow();
            pool.awaitTermination(LIMIT.toSeconds(), TimeUnit.SECONDS);
        }
    }

    /** The stacks of the live threads called {@code name}, one frame a line. */
    static String stacksOf(String name) {
        StringBuilder out = new StringBuilder();
        Thread.getAllStackTraces().forEach((t, frames) -> {
            if (!t.getName().equals(name)) return;
            out.append("\n").append(t);
            for (StackTraceElement f : frames) out.append("\n    at ").append(f);
        });
        return out.toString();
    }

    static int exec(String... cmd) throws Exception {
        return exec(List.of(), cmd);
    }

    static int exec(List<String> prefix, String... cmd) throws Exception {
        List<String> all = new ArrayList<>(prefix);
        all.addAll(List.of(cmd));
        Process p = new ProcessBuilder(all)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .start();
        if (!p.waitFor(30, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            p.waitFor(10, TimeUnit.SECONDS);
            return -1;
        }
        return p.exitValue();
    }

    static void copyTree(Path from, Path to) throws IOException {
        try (var walk = Files.walk(from)) {
            for (Path p : walk.toList()) {
                Path t = to.resolve(from.relativize(p).toString());
                if (Files.isDirectory(p)) Files.createDirectories(t);
                else Files.copy(p, t);
            }
        }
    }
}
