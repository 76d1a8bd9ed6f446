package dev.gmem.fc;

import static org.assertj.core.api.Assertions.assertThat;

import dev.gmem.kvm.GuestProgram;
import dev.gmem.snapshot.Codec;
import dev.gmem.snapshot.Fixtures;
import dev.gmem.testing.GmemProcess;
import dev.gmem.testing.Host;
import dev.gmem.testing.KvmVmm;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real KVM vCPU in another process, whose guest memory this handler serves: the VMM ({@link
 * KvmVmm}) registers its regions and sends its userfaultfd as Firecracker does, then its vCPU reads
 * every page, each first touch a fault raised inside KVM and served here.
 */
class FcHandlerKvmTest {
    static final long SIZE = 16L << 20;
    static final long PAGE = 4096;

    @TempDir
    Path dir;

    @Test
    void aVcpuInAnotherProcessReadsTheSnapshotThroughTheHandler() throws Exception {
        Host.assumeKvm();
        Host.assumeUserfaultfd();
        Path raw = Fixtures.raw(dir, "raw", SIZE, 61);
        Path snap = Fixtures.pack(raw, dir.resolve("s.snap"), Codec.ZSTD);
        ByteBuffer image = ByteBuffer.wrap(Files.readAllBytes(raw)).order(ByteOrder.LITTLE_ENDIAN);
        long want = 0;
        for (long p = 0; p < SIZE; p += PAGE) want = GuestProgram.fold(want, image.getLong((int) p));
        // on demand alone, every page the vCPU reads is a fault KVM raised; then with the prefetch racing it
        for (Session.Prefetch prefetch : Session.Prefetch.values()) {
            try (FcHandlerTest.Served h = FcHandlerTest.Served.start(
                    snap,
                    dir.resolve("kvm-" + prefetch + ".sock"),
                    new FcHandler.Options(
                            Duration.ofSeconds(10), prefetch, 3, FcHandler.OnFailure.KILL, java.util.Set.of()))) {
                GmemProcess.Result r = GmemProcess.startMain(
                                dir,
                                KvmVmm.class.getName(),
                                h.handler().socket().toString(),
                                raw.toString(),
                                (10L << 20) + "," + (6L << 20))
                        .await(Duration.ofMinutes(3));
                assertThat(r.exit()).as(r.toString()).isZero();
                assertThat(r.out().strip())
                        .as("the vCPU and the host side saw the snapshot, with %s prefetch", prefetch)
                        .startsWith("guest=" + Long.toUnsignedString(want) + " host=" + Long.toUnsignedString(want)
                                + " wrong=0 ");
                FcHandlerTest.Served.awaitAny(h.reports());
                Session.Report report = h.reports().getFirst();
                if (prefetch == Session.Prefetch.OFF) {
                    assertThat(report.end()).as(report.toString()).isEqualTo(Session.End.VMM_EXITED);
                    assertThat(report.counts().faults())
                            .as("the vCPU's reads were faults served here: %s", report.counts())
                            .isPositive();
                } else {
                    assertThat(report.end()).as(report.toString()).isIn(Session.End.GRADUATED, Session.End.VMM_EXITED);
                }
                assertThat(h.log()).as("nothing went wrong").isEmpty();
            }
        }
        assertThat(GmemProcess.crashLogs(dir)).isEmpty();
    }
}
