package dev.gmem.bench;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeoutException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A real Linux guest for QEMU under TCG, for the QEMU tests and {@code gmem bench qemu}: Debian's
 * cloud kernel (fetched by {@code build/guest-kernel}) and a busybox initramfs built here, whose
 * init fills a file in guest RAM with random data, prints {@code tick N} every period on the serial
 * console, and answers a line {@code sum} with {@code sum <sha256 of the data>}.
 */
public final class LinuxGuest {
    /** The QEMU this guest runs on. */
    public static final String QEMU = "qemu-system-x86_64";

    private static final String INIT = """
            #!/bin/busybox sh
            /bin/busybox --install -s /bin
            mount -t proc proc /proc
            mount -t devtmpfs dev /dev
            mb=16
            tick=50000
            for w in $(cat /proc/cmdline); do
              case "$w" in
                gmem.data_mb=*) mb=${w#gmem.data_mb=} ;;
                gmem.tick_us=*) tick=${w#gmem.tick_us=} ;;
              esac
            done
            dd if=/dev/urandom of=/data bs=1M count=$mb 2>/dev/null
            echo "ready $mb"
            (i=0; while :; do echo "tick $i"; i=$((i+1)); usleep $tick; done) &
            while read line; do
              case "$line" in sum) echo "sum $(sha256sum /data)" ;; esac
            done
            """;

    private LinuxGuest() {}

    /** Where build/guest-kernel puts the kernel. */
    public static Path kernel() {
        String dir = System.getenv("GMEM_GUEST_DIR");
        return (dir != null ? Path.of(dir) : Path.of(System.getProperty("user.home"), ".cache", "gmem", "guest"))
                .resolve("vmlinuz");
    }

    /** Why this host cannot run the guest, or null when it can. */
    public static String unavailable() {
        if (!System.getProperty("os.arch").equals("amd64"))
            return "the test guest is x86_64, this host is " + System.getProperty("os.arch");
        if (findProgram(QEMU) == null) return QEMU + " is not installed (apt-get install qemu-system-x86)";
        if (!Files.isRegularFile(busybox())) return "busybox is not installed (apt-get install busybox-static)";
        if (!Files.isRegularFile(kernel()))
            return "no guest kernel at " + kernel() + " (build/guest-kernel fetches it)";
        return null;
    }

    static Path busybox() {
        return Path.of("/bin/busybox");
    }

    /** The path of {@code name} on PATH, or null. */
    public static Path findProgram(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "/usr/bin:/bin").split(":")) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) return p;
        }
        return null;
    }

    /** Writes the initramfs (a newc cpio archive) to {@code file}. */
    public static Path initramfs(Path file) throws IOException {
        ByteArrayOutputStream a = new ByteArrayOutputStream();
        int[] inode = {1};
        for (String d : new String[] {"bin", "proc", "dev", "sys"}) entry(a, inode, d, 0040755, new byte[0]);
        entry(a, inode, "bin/busybox", 0100755, Files.readAllBytes(busybox()));
        entry(a, inode, "init", 0100755, INIT.getBytes(StandardCharsets.UTF_8));
        entry(a, inode, "TRAILER!!!", 0, new byte[0]);
        while (a.size() % 512 != 0) a.write(0);
        Files.write(file, a.toByteArray());
        return file;
    }

    private static void entry(ByteArrayOutputStream out, int[] inode, String name, int mode, byte[] data) {
        byte[] n = (name + "\0").getBytes(StandardCharsets.US_ASCII);
        StringBuilder h = new StringBuilder("070701");
        long[] fields = {inode[0]++, mode, 0, 0, mode == 0040755 ? 2 : 1, 0, data.length, 0, 0, 0, 0, n.length, 0};
        for (long f : fields) h.append(String.format(Locale.ROOT, "%08X", f));
        out.writeBytes(h.toString().getBytes(StandardCharsets.US_ASCII));
        out.writeBytes(n);
        pad(out);
        out.writeBytes(data);
        pad(out);
    }

    private static void pad(ByteArrayOutputStream out) {
        while (out.size() % 4 != 0) out.write(0);
    }

    /**
     * The QEMU command that boots the guest (without RAM options: the caller adds its memory backend):
     * TCG, q35, no default devices, the serial console on stdio.
     */
    public static List<String> command(Path initramfs, int dataMiB, int tickMicros) {
        return new ArrayList<>(List.of(
                QEMU,
                "-accel",
                "tcg",
                "-nodefaults",
                "-nographic",
                "-machine",
                "q35",
                "-kernel",
                kernel().toString(),
                "-initrd",
                initramfs.toString(),
                "-append",
                "console=ttyS0 quiet panic=-1 gmem.data_mb=" + dataMiB + " gmem.tick_us=" + tickMicros,
                "-serial",
                "stdio",
                "-no-reboot"));
    }

    /** The guest's console on a process's standard output and input, read on a thread of its own. */
    public static final class Console implements AutoCloseable {
        private static final Pattern TICK = Pattern.compile("tick (\\d+)\\r?\\n");
        private static final Pattern SUM = Pattern.compile("sum ([0-9a-f]{64}) ");

        private final ByteArrayOutputStream seen = new ByteArrayOutputStream();
        private final OutputStream input;
        private final Thread reader;
        private volatile boolean ended;

        public Console(Process p) {
            this(p.getInputStream(), p.getOutputStream());
        }

        public Console(InputStream output, OutputStream input) {
            this.input = input;
            this.reader = Thread.ofPlatform()
                    .daemon()
                    .name("gmem-guest-console")
                    .start(() -> {
                        byte[] b = new byte[4096];
                        try {
                            for (int n; (n = output.read(b)) > 0; ) {
                                synchronized (seen) {
                                    seen.write(b, 0, n);
                                    seen.notifyAll();
                                }
                            }
                        } catch (IOException e) {
                            // the process is gone
                        } finally {
                            synchronized (seen) {
                                ended = true;
                                seen.notifyAll();
                            }
                        }
                    });
        }

        /** Everything the console printed so far. */
        public String text() {
            synchronized (seen) {
                return seen.toString(StandardCharsets.ISO_8859_1);
            }
        }

        /** Waits until the console's text from offset {@code from} matches {@code pattern}; returns the match. */
        public Matcher await(Pattern pattern, int from, Duration timeout)
                throws TimeoutException, InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            synchronized (seen) {
                while (true) {
                    String t = seen.toString(StandardCharsets.ISO_8859_1);
                    Matcher m = pattern.matcher(t);
                    if (m.find(Math.min(from, t.length()))) return m;
                    long left = deadline - System.nanoTime();
                    if (left <= 0 || ended)
                        throw new TimeoutException("the guest console did not show /" + pattern + "/ "
                                + (ended ? "before it closed" : "within " + timeout.toMillis() + " ms")
                                + "; it ends with: "
                                + t.substring(Math.max(0, t.length() - 300)).replace("\r", ""));
                    seen.wait(Math.max(1, left / 1_000_000));
                }
            }
        }

        /** Waits for the tick numbered at least {@code n}. */
        public void awaitTick(long n, Duration timeout) throws TimeoutException, InterruptedException {
            long deadline = System.nanoTime() + timeout.toNanos();
            while (true) {
                List<Long> t = ticks(text());
                if (!t.isEmpty() && t.getLast() >= n) return;
                await(
                        TICK,
                        Math.max(0, text().length() - 1),
                        Duration.ofNanos(Math.max(1, deadline - System.nanoTime())));
                if (System.nanoTime() > deadline) throw new TimeoutException("no tick " + n + " on the guest console");
            }
        }

        /** Asks the guest for its data's sha256, and waits for it. */
        public String sha256(Duration timeout) throws IOException, TimeoutException, InterruptedException {
            int from = text().length();
            input.write("sum\n".getBytes(StandardCharsets.US_ASCII));
            input.flush();
            return await(SUM, from, timeout).group(1);
        }

        /** Waits until the console's output ends (the process closed it). */
        public void awaitEnd(Duration timeout) throws InterruptedException {
            reader.join(timeout);
        }

        /** Every tick number in {@code text}, in order. */
        public static List<Long> ticks(String text) {
            List<Long> out = new ArrayList<>();
            Matcher m = TICK.matcher(text);
            while (m.find()) out.add(Long.parseLong(m.group(1)));
            return out;
        }

        @Override
        public void close() {
            try {
                input.close();
            } catch (IOException e) {
                // the process is gone
            }
        }
    }
}
