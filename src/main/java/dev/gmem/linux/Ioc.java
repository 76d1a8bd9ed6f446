package dev.gmem.linux;

/**
 * ioctl request numbers as the kernel's {@code _IOC} macros encode them on x86_64 and aarch64:
 * {@code dir<<30 | size<<16 | type<<8 | nr}, with direction NONE=0, WRITE=1 (to the kernel), READ=2.
 */
public final class Ioc {
    private static final int NONE = 0;
    private static final int WRITE = 1;
    private static final int READ = 2;

    private Ioc() {}

    private static long ioc(int dir, int type, int nr, long size) {
        if (type < 0 || type > 0xff || nr < 0 || nr > 0xff || size < 0 || size > 0x3fff) {
            throw new IllegalArgumentException(
                    "ioctl field out of range: type=" + type + " nr=" + nr + " size=" + size);
        }
        return ((long) dir << 30) | (size << 16) | ((long) type << 8) | nr;
    }

    /** {@code _IO(type, nr)}. */
    public static long io(int type, int nr) {
        return ioc(NONE, type, nr, 0);
    }

    /** {@code _IOR(type, nr, size)}: the kernel writes the argument. */
    public static long ior(int type, int nr, long size) {
        return ioc(READ, type, nr, size);
    }

    /** {@code _IOW(type, nr, size)}: the kernel reads the argument. */
    public static long iow(int type, int nr, long size) {
        return ioc(WRITE, type, nr, size);
    }

    /** {@code _IOWR(type, nr, size)}. */
    public static long iowr(int type, int nr, long size) {
        return ioc(READ | WRITE, type, nr, size);
    }
}
