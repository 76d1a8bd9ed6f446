package dev.gmem.migrate;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.fault.UffdMode;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.LazyRestore;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.snapshot.PageSource;
import dev.gmem.snapshot.PageSources;
import dev.gmem.testing.Host;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/** Post-copy over loopback, in one process: a page server and a lazy restore fed from it, verified page by page. */
@Timeout(40)
class PostcopyTest {
    static final long SIZE = 64L << 20;

    @TempDir
    Path dir;

    @Test
    void aLazyRestoreFromAPageServerIsRightPageByPage() throws Exception {
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 41);
        Path snap = Fixtures.pack(raw, dir.resolve("snap"), Codec.LZ4);
        List<String> log = Collections.synchronizedList(new ArrayList<>());
        java.util.function.Consumer<String> logger = l -> {
            System.out.println("postcopy log: " + l);
            log.add(l);
        };
        for (Path served : new Path[] {raw, snap}) {
            for (boolean lz4 : new boolean[] {false, true}) {
                try (PageSource source = PageSources.open(served, null, 2, x -> {}, PageSources.Format.AUTO);
                        PageServer server = PageServer.start(
                                new InetSocketAddress("127.0.0.1", 0),
                                source,
                                new PageServer.Options(Duration.ofSeconds(5), lz4, null),
                                logger);
                        RemoteSource remote = RemoteSource.connect(
                                "127.0.0.1", server.address().getPort(), RemoteSource.Options.defaults(), logger)) {
                    assertThat(remote.size()).isEqualTo(source.size());
                    assertThat(remote.counts().dataPages())
                            .isEqualTo(source.counts().dataPages());
                    assertThat(remote.counts().zeroPages())
                            .isEqualTo(source.counts().zeroPages());
                    assertThat(remote.counts().holePages())
                            .isEqualTo(source.counts().holePages());
                    LazyRestore.Outcome o = LazyRestore.run(
                            remote,
                            GuestMemory.Backend.MEMFD,
                            LazyRestore.Options.defaults(UffdMode.MISSING),
                            new LazyRestore.Checks(2, 7, 0, Duration.ofMinutes(1), Duration.ofMinutes(1)));
                    assertThat(o.verify().wrongPages())
                            .as("%s lz4=%s: %s", served, lz4, log)
                            .isZero();
                    assertThat(o.stats().complete()).isTrue();
                    RemoteSource.Stats s = remote.stats();
                    assertThat(s.pushedPages() + s.requestedPages())
                            .isGreaterThanOrEqualTo(source.counts().dataPages());
                    assertThat(server.stats())
                            .singleElement()
                            .satisfies(d -> assertThat(d.pushDone()).isTrue());
                    System.out.println("postcopy test: " + served.getFileName() + " lz4=" + lz4 + ": " + s + "; "
                            + server.stats());
                }
            }
        }
    }
}
