package dev.gmem.fault;

import dev.gmem.snapshot.PageKind;
import java.io.IOException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

/**
 * Page providers for tests, each over a real provider: one whose first fetch on a chosen thread
 * waits at a gate (to hold a fault or a prefetch at a known point), and one that delivers every
 * fetch later on a thread of its own, as a remote provider would.
 */
final class TestProviders {
    private TestProviders() {}

    /** Forwards everything to {@code inner}. */
    abstract static class Forwarding implements PageProvider {
        final PageProvider inner;

        Forwarding(PageProvider inner) {
            this.inner = inner;
        }

        @Override
        public long size() {
            return inner.size();
        }

        @Override
        public long pageSize(long offset) {
            return inner.pageSize(offset);
        }

        @Override
        public PageKind kind(long offset) {
            return inner.kind(offset);
        }

        @Override
        public int dataRun(long offset, int maxPages) {
            return inner.dataRun(offset, maxPages);
        }

        @Override
        public long nextData(long offset) {
            return inner.nextData(offset);
        }

        @Override
        public long[] accessOrder() {
            return inner.accessOrder();
        }

        @Override
        public String describe() {
            return inner.describe();
        }

        @Override
        public void close() throws IOException {
            inner.close();
        }
    }

    /** The first fetch made on a thread that {@code on} accepts waits, inside fetch, until {@link #open}. */
    static final class Gated extends Forwarding {
        final CountDownLatch reached = new CountDownLatch(1);
        private final CountDownLatch gate = new CountDownLatch(1);
        private final Predicate<Thread> on;
        private volatile boolean passed;
        volatile long heldOffset = -1;

        Gated(PageProvider inner, Predicate<Thread> on) {
            super(inner);
            this.on = on;
        }

        static Predicate<Thread> named(String name) {
            return t -> t.getName().equals(name);
        }

        void awaitReached() throws InterruptedException {
            if (!reached.await(10, TimeUnit.SECONDS)) throw new AssertionError("no fetch reached the gate in 10 s");
        }

        void open() {
            gate.countDown();
        }

        @Override
        public Fetcher fetcher() {
            Fetcher f = inner.fetcher();
            return new Fetcher() {
                @Override
                public void fetch(long offset, int pages, long token, Delivery to) throws IOException {
                    if (!passed && on.test(Thread.currentThread())) {
                        passed = true;
                        heldOffset = offset;
                        reached.countDown();
                        try {
                            if (!gate.await(20, TimeUnit.SECONDS))
                                throw new IOException("the test never opened the gate");
                        } catch (InterruptedException e) {
                            throw new java.io.InterruptedIOException();
                        }
                    }
                    f.fetch(offset, pages, token, to);
                }

                @Override
                public void close() {
                    f.close();
                }
            };
        }
    }

    /** Delivers every fetch on its own thread, after the fetch call returned. */
    static final class Later extends Forwarding {
        private final ExecutorService worker = Executors.newSingleThreadExecutor(
                r -> Thread.ofPlatform().name("test-provider").daemon().unstarted(r));
        private Fetcher workerFetcher; // used on the worker thread only

        Later(PageProvider inner) {
            super(inner);
        }

        @Override
        public Fetcher fetcher() {
            return new Fetcher() {
                @Override
                public void fetch(long offset, int pages, long token, Delivery to) {
                    worker.execute(() -> {
                        try {
                            if (workerFetcher == null) workerFetcher = inner.fetcher();
                            workerFetcher.fetch(offset, pages, token, to);
                        } catch (IOException e) {
                            to.failed(token, offset, e);
                        }
                    });
                }

                @Override
                public void close() {}
            };
        }

        @Override
        public void close() throws IOException {
            worker.execute(() -> {
                if (workerFetcher != null) workerFetcher.close();
            });
            worker.shutdown();
            try {
                worker.awaitTermination(10, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            super.close();
        }
    }
}
