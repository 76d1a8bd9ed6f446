package dev.gmem.util;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Runs an indexed task over {@code [0, count)} on a bounded number of named platform threads,
 * the caller's own among them. Threads take the next index as they finish one, so uneven work
 * balances. The first failure stops the others from starting new indexes and is rethrown as it
 * was (an IOException stays one); later failures are added to it as suppressed.
 */
public final class Parallel {
    private Parallel() {}

    @FunctionalInterface
    public interface IndexTask {
        void run(int index) throws IOException;
    }

    public static void forEach(int threads, String name, int count, IndexTask task) throws IOException {
        if (threads < 1) throw new IllegalArgumentException("threads must be at least 1, not " + threads);
        AtomicInteger next = new AtomicInteger();
        Throwable[] failure = new Throwable[1];
        Runnable worker = () -> {
            for (int i; (i = next.getAndIncrement()) < count; ) {
                try {
                    task.run(i);
                } catch (Throwable t) {
                    next.set(count);
                    synchronized (failure) {
                        if (failure[0] == null) failure[0] = t;
                        else if (failure[0] != t) failure[0].addSuppressed(t);
                    }
                    return;
                }
            }
        };
        int extra = Math.min(threads, Math.max(1, count)) - 1;
        List<Thread> workers = new ArrayList<>(extra);
        for (int t = 1; t <= extra; t++)
            workers.add(Thread.ofPlatform().name(name + "-" + t).start(worker));
        worker.run();
        boolean interrupted = false;
        for (Thread w : workers) {
            while (true) {
                try {
                    w.join();
                    break;
                } catch (InterruptedException e) {
                    interrupted = true; // the workers finish their current index and stop; wait for them
                    next.set(count);
                }
            }
        }
        if (interrupted) Thread.currentThread().interrupt();
        Throwable t = failure[0];
        if (t == null) {
            if (interrupted) throw new IOException(name + ": interrupted");
            return;
        }
        switch (t) {
            case IOException io -> throw io;
            case RuntimeException re -> throw re;
            case Error err -> throw err;
            default -> throw new IOException(t);
        }
    }
}
