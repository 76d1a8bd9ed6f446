package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.gmem.linux.Fd;
import dev.gmem.linux.Linux;
import dev.gmem.linux.Pidfds;
import dev.gmem.testing.Host;
import dev.gmem.uffd.Userfaultfd;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The keeper, with real descriptors: a userfaultfd and the pidfd of a child process are kept,
 * given back as a copy of the same userfaultfd, forgotten, and let go by themselves once the
 * process exits; each bad request is refused with its reason.
 */
@Timeout(60)
class KeeperTest {
    @TempDir
    Path dir;

    @Test
    void keepsGivesForgetsAndLetsGoOfAVmmThatExited() throws Exception {
        Host.assumeUserfaultfd();
        List<String> log = java.util.Collections.synchronizedList(new ArrayList<>());
        List<Process> children = new ArrayList<>();
        try (Keeper k = Keeper.start(dir.resolve("k.sock"), log::add);
                Userfaultfd uffd = Userfaultfd.open(Linux.O_NONBLOCK)) {
            Path socket = k.socket();
            Process a = new ProcessBuilder("sleep", "60").start(), b = new ProcessBuilder("sleep", "60").start();
            children.add(a);
            children.add(b);
            String keyA = "vm-" + a.pid() + "-1", keyB = "vm-" + b.pid() + "-2";
            try (Fd pa = Pidfds.open((int) a.pid());
                    Fd pb = Pidfds.open((int) b.pid())) {
                Keeper.keep(socket, keyA, uffd.fd(), pa);
                Keeper.keep(socket, keyB, uffd.fd(), pb);
                // refused, each with its reason, and nothing kept
                assertThatThrownBy(() -> Keeper.keep(socket, "vm-" + a.pid() + "-3", pa, pa))
                        .hasMessageContaining("not a userfaultfd");
                assertThatThrownBy(() -> Keeper.keep(socket, "vm-" + a.pid() + "-3", uffd.fd(), uffd.fd()))
                        .hasMessageContaining("not a pidfd");
                assertThatThrownBy(() -> Keeper.keep(socket, "vm-" + b.pid() + "-3", uffd.fd(), pa))
                        .hasMessageContaining("not of process " + b.pid());
                assertThatThrownBy(() -> Keeper.keep(socket, "../etc", uffd.fd(), pa))
                        .hasMessageContaining("not a VM's key");
                assertThatThrownBy(() -> Keeper.give(socket, "vm-1-1")).hasMessageContaining("nothing is kept");
            }
            assertThat(k.list()).extracting(Keeper.Entry::key).containsExactly(keyA, keyB);
            // the copy given back is the same open file: its inode is the kept userfaultfd's
            try (Fd copy = Keeper.give(socket, keyA);
                    Userfaultfd another = Userfaultfd.open(Linux.O_NONBLOCK)) {
                assertThat(inode(another.fd())).isNotEqualTo(inode(uffd.fd())); // each userfaultfd an inode of its own
                assertThat(inode(copy)).isEqualTo(inode(uffd.fd()));
            }
            Keeper.forget(socket, keyA);
            assertThat(k.list()).extracting(Keeper.Entry::key).containsExactly(keyB);
            // b exits: the keeper lets its descriptors go by itself
            b.destroyForcibly();
            assertThat(b.waitFor(10, TimeUnit.SECONDS)).isTrue();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
            while (!k.list().isEmpty() && System.nanoTime() < deadline) Thread.sleep(5);
            assertThat(k.list()).isEmpty();
            assertThat(log).anySatisfy(l -> assertThat(l).contains(keyB + ": its VMM exited"));
            assertThat(ControlSocket.askForDescriptors(socket, "list", List.of(), Keeper.NAME)
                            .text())
                    .isEqualTo("{\"kept\":[]}");
            assertThat(ControlSocket.askForDescriptors(socket, "steal vm-1-1", List.of(), Keeper.NAME)
                            .text())
                    .startsWith("error: unknown request");
        } finally {
            for (Process p : children) {
                p.destroyForcibly();
                p.waitFor(10, TimeUnit.SECONDS);
            }
        }
        assertThat(dir.resolve("k.sock")).doesNotExist();
    }

    private static long inode(Fd fd) throws Exception {
        return (long) Files.getAttribute(Path.of("/proc/self/fd/" + fd.number()), "unix:ino");
    }
}
