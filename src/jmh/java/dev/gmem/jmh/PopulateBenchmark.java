package dev.gmem.jmh;

import dev.gmem.kvm.GuestMemfdFlag;
import dev.gmem.linux.Mapping;
import dev.gmem.memory.GuestMemories;
import dev.gmem.memory.GuestMemory;
import dev.gmem.restore.Populator;
import dev.gmem.restore.Strategy;
import java.io.IOException;
import java.lang.foreign.ValueLayout;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;

/**
 * The population strategies under JMH: each invocation fills a fresh guest memory file (created
 * and closed outside the measurement) from one warm source buffer. Single-shot time, because
 * population is a one-off per file. Run with {@code ./gmem jmh PopulateBenchmark}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.SingleShotTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3)
@Measurement(iterations = 10)
@Fork(
        value = 1,
        jvmArgsAppend = {"--enable-native-access=ALL-UNNAMED"})
public class PopulateBenchmark {
    @Param({"memfd", "kernel"})
    public String backend;

    @Param({"mapped-copy", "populate-copy", "write"})
    public String strategy;

    @Param({"1", "2"})
    public int threads;

    @Param({"128"})
    public int sizeMiB;

    private Mapping source;
    private GuestMemory memory;

    @Setup(Level.Trial)
    public void source() throws IOException {
        long size = (long) sizeMiB << 20;
        source = Mapping.anonymous(size);
        for (long i = 0; i < size / 8; i++)
            source.segment().setAtIndex(ValueLayout.JAVA_LONG, i, (i + 1) * 0x9E3779B97F4A7C15L);
    }

    @Setup(Level.Invocation)
    public void freshMemory() throws IOException {
        memory = GuestMemories.create(
                GuestMemory.Backend.valueOf(backend.toUpperCase(Locale.ROOT)),
                source.length(),
                GuestMemfdFlag.mask(GuestMemfdFlag.MMAP, GuestMemfdFlag.INIT_SHARED));
    }

    @Benchmark
    public void populate() throws IOException {
        Populator.populate(Strategy.parse(strategy), threads, memory, 0, source.segment());
    }

    @TearDown(Level.Invocation)
    public void verifyAndClose() throws IOException {
        long mismatch = memory.guestView().mismatch(source.segment());
        memory.close();
        if (mismatch != -1) throw new IllegalStateException("populated memory differs from the source at " + mismatch);
    }

    @TearDown(Level.Trial)
    public void release() {
        source.close();
    }
}
