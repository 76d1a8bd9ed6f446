package dev.gmem.memory;

/** A pin on a range of guest memory: {@link #close()} releases it, once. */
public interface Pin extends AutoCloseable {
    long offset();

    long length();

    @Override
    void close();
}
