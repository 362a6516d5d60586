package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;

/**
 * A process held by a pidfd ({@code pidfd_open(2)}): signals sent through it reach that process or nothing, even
 * after its pid has been reused, and its exit is an event (the pidfd turns readable). For processes Kiln did not
 * start itself, such as a Firecracker the jailer forked, where a plain pid could name a stranger by the time it is
 * signalled.
 */
public final class PidFd implements AutoCloseable {
    private static final MethodHandle OPEN = Libc.withErrno("pidfd_open", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SEND_SIGNAL = Libc.withErrno("pidfd_send_signal",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));

    private final long pid;
    private final Fd fd;
    private final CompletableFuture<Void> exit = new CompletableFuture<>();
    private final java.util.concurrent.atomic.AtomicBoolean watched = new java.util.concurrent.atomic.AtomicBoolean();

    private PidFd(long pid, Fd fd) {
        this.pid = pid;
        this.fd = fd;
    }

    /** Opens a pidfd for {@code pid}; empty when there is no such process. */
    public static Optional<PidFd> open(long pid) {
        if (pid <= 0 || pid > Integer.MAX_VALUE) throw new IllegalArgumentException("not a process id: " + pid);
        long r = Libc.call(state -> (int) OPEN.invokeExact(state, (int) pid, 0));
        if (r == -Libc.ESRCH) return Optional.empty();
        int number = (int) Libc.check(r, "pidfd_open(" + pid + ")");
        Fd fd = Fd.adopt(number);
        try {
            Posix.setCloexec(fd, true);
        } catch (RuntimeException e) {
            fd.close();
            throw e;
        }
        return Optional.of(new PidFd(pid, fd));
    }

    public long pid() {
        return pid;
    }

    /** Sends {@code signal}; false when the process has already exited. */
    public boolean signal(int signal) {
        int number;
        try {
            number = fd.number();
        } catch (KilnException closed) {
            return false;
        }
        long r = Libc.call(state -> (int) SEND_SIGNAL.invokeExact(state, number, signal, MemorySegment.NULL, 0));
        if (r == -Libc.ESRCH) return false;
        Libc.check(r, "pidfd_send_signal(pid " + pid + ", " + Libc.signalName(signal) + ")");
        return true;
    }

    /** Whether the process runs (a pidfd polls readable once it has exited). */
    public boolean isAlive() {
        if (exit.isDone()) return false;
        try {
            return !Posix.awaitReadable(fd, java.time.Duration.ZERO);
        } catch (KilnException closed) {
            return false;
        }
    }

    /** Completes when the process has exited (watched from then on by one JVM-wide thread). */
    public CompletableFuture<Void> onExit() {
        synchronized (this) {
            if (fd.isOpen() && watched.compareAndSet(false, true)) ExitWatcher.watch(fd, () -> exit.complete(null));
        }
        return exit.copy();
    }

    /** Stops watching and closes the pidfd; signals then do nothing. */
    @Override
    public synchronized void close() {
        if (watched.get()) ExitWatcher.forget(fd);
        fd.close();
    }

    @Override
    public String toString() {
        return "PidFd[pid " + pid + (exit.isDone() ? ", exited" : "") + "]";
    }
}
