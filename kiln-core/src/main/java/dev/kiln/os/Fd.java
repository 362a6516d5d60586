package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.FunctionDescriptor;
import java.lang.invoke.MethodHandle;
import java.util.concurrent.atomic.AtomicBoolean;

import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * An owned raw file descriptor. The JDK hides descriptors inside its channels and streams, but passing one to a
 * child process or over SCM_RIGHTS needs the number itself, and someone has to own closing it.
 *
 * <p>{@link #close()} is idempotent and thread-safe. Closing an {@code Fd} while another thread still uses its
 * number is the caller's race: the kernel may hand the number to a new file at once.
 */
public final class Fd implements AutoCloseable {
    private static final MethodHandle CLOSE = Libc.withErrno("close", FunctionDescriptor.of(JAVA_INT, JAVA_INT));

    private final int number;
    private final AtomicBoolean closed = new AtomicBoolean();

    private Fd(int number) {
        this.number = number;
    }

    /** Takes ownership of {@code number}: closing the returned {@code Fd} closes it. */
    public static Fd adopt(int number) {
        if (number < 0) throw new IllegalArgumentException("not a file descriptor: " + number);
        return new Fd(number);
    }

    /** The descriptor's number; throws once closed, so a stale number is never used by mistake. */
    public int number() {
        if (closed.get()) throw new KilnException("file descriptor " + number + " is already closed");
        return number;
    }

    public boolean isOpen() {
        return !closed.get();
    }

    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) return;
        long r = Libc.call(state -> (int) CLOSE.invokeExact(state, number));
        // Linux releases the descriptor even when close is interrupted, so EINTR must not be retried.
        if (r < 0 && r != -Libc.EINTR) throw Libc.failure("close(" + number + ")", (int) -r);
    }

    @Override
    public String toString() {
        return closed.get() ? "Fd[" + number + ", closed]" : "Fd[" + number + "]";
    }
}
