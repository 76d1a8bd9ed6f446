package dev.gmem.linux;

import java.io.IOException;
import java.util.Optional;

/**
 * A system call or C library function failed. The message names the call, its key arguments and
 * the errno symbol, for example {@code pwrite(fd=7, off=4096, len=4096): ENOSPC (No space left on device)}.
 */
public class SyscallException extends IOException {
    private static final long serialVersionUID = 1L;

    private final String call;
    private final String arguments;
    private final int errnoNumber;

    public SyscallException(String call, String arguments, int errnoNumber) {
        super(format(call, arguments, errnoNumber));
        this.call = call;
        this.arguments = arguments;
        this.errnoNumber = errnoNumber;
    }

    public SyscallException(String call, String arguments, Errno errno) {
        this(call, arguments, errno.number());
    }

    private static String format(String call, String arguments, int number) {
        String text =
                Errno.of(number).map(e -> e.name() + " (" + e.message() + ")").orElse("errno " + number);
        return call + "(" + arguments + "): " + text;
    }

    /** The function that failed, e.g. "pwrite" or "ioctl KVM_CREATE_GUEST_MEMFD". */
    public String call() {
        return call;
    }

    /** The arguments as the message shows them. */
    public String arguments() {
        return arguments;
    }

    /** The errno symbol, or empty for a number outside the {@link Errno} table. */
    public Optional<Errno> errno() {
        return Errno.of(errnoNumber);
    }

    public int errnoNumber() {
        return errnoNumber;
    }

    /** True when this failure carries exactly {@code e}. */
    public boolean is(Errno e) {
        return errnoNumber == e.number();
    }

    /** The errno symbol and message alone, e.g. "ENOTTY (Inappropriate ioctl for device)". */
    public String errnoText() {
        return Errno.of(errnoNumber)
                .map(e -> e.name() + " (" + e.message() + ")")
                .orElse("errno " + errnoNumber);
    }
}
