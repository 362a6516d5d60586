package dev.kiln.os;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * The tools of an event loop on one platform thread: {@code poll(2)} over a set of descriptors, and reads and
 * sends that allocate nothing per call and report errors as values rather than exceptions (a loop serving many
 * peers must go on when one of them fails).
 *
 * <p>Not thread-safe: create, use and close a {@code Poller} on the loop's own thread. {@link #poll} blocks in a
 * native call, which pins a virtual thread's carrier: use a platform thread.
 */
public final class Poller implements AutoCloseable {
    /** Event bits of {@code struct pollfd}. */
    public static final short IN = 0x1, OUT = 0x4, ERROR = 0x8, HANGUP = 0x10, INVALID = 0x20;
    public static final int EAGAIN = 11;
    private static final int MSG_NOSIGNAL = 0x4000;
    private static final long POLLFD_SIZE = 8; // struct pollfd { int fd; short events; short revents; }

    private static final MethodHandle POLL = Libc.withErrno("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final MethodHandle READ = Libc.withErrno("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle SEND = Libc.withErrno("send",
            FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final StructLayout STATE = Linker.Option.captureStateLayout();
    private static final VarHandle ERRNO = STATE.varHandle(MemoryLayout.PathElement.groupElement("errno"));

    private final Arena arena = Arena.ofConfined();
    private final MemorySegment errnoState = arena.allocate(STATE);
    private MemorySegment pollfds;
    private int count;

    public Poller() {
        pollfds = arena.allocate(POLLFD_SIZE * 16, 8);
    }

    /** Empties the set, before it is filled again for the next {@link #poll}. */
    public void clear() {
        count = 0;
    }

    /** Adds {@code fd} with the {@code events} to wait for; returns its index for {@link #ready}. */
    public int add(int fd, short events) {
        if (fd < 0) throw new IllegalArgumentException("not a file descriptor: " + fd);
        if (POLLFD_SIZE * (count + 1) > pollfds.byteSize()) {
            MemorySegment bigger = arena.allocate(pollfds.byteSize() * 2, 8);
            bigger.copyFrom(pollfds);
            pollfds = bigger; // the old block stays in the arena until close; sets grow rarely
        }
        long at = POLLFD_SIZE * count;
        pollfds.set(JAVA_INT, at, fd);
        pollfds.set(JAVA_SHORT, at + 4, events);
        pollfds.set(JAVA_SHORT, at + 6, (short) 0);
        return count++;
    }

    /**
     * Waits until a descriptor in the set is ready or {@code timeoutMillis} passed (negative: no limit).
     * Returns how many are ready, 0 on timeout or when a signal interrupted the wait.
     */
    public int poll(int timeoutMillis) {
        long n;
        try {
            n = (int) POLL.invokeExact(errnoState, pollfds, (long) count, timeoutMillis);
        } catch (Throwable t) {
            throw new IllegalStateException("poll(" + count + " descriptors) failed: " + t, t);
        }
        if (n >= 0) return (int) n;
        int errno = (int) ERRNO.get(errnoState, 0L);
        if (errno == Libc.EINTR) return 0;
        throw Libc.failure("poll(" + count + " descriptors, " + timeoutMillis + " ms)", errno);
    }

    /** The events that happened to entry {@code index} in the last {@link #poll}. */
    public short ready(int index) {
        return pollfds.get(JAVA_SHORT, POLLFD_SIZE * index + 6);
    }

    /** Reads into {@code into}; returns the count, 0 at end of file, or minus the errno (EINTR is retried). */
    public long read(int fd, MemorySegment into) {
        while (true) {
            long n;
            try {
                n = (long) READ.invokeExact(errnoState, fd, into, into.byteSize());
            } catch (Throwable t) {
                throw new IllegalStateException("read(fd " + fd + ") failed: " + t, t);
            }
            if (n >= 0) return n;
            int errno = (int) ERRNO.get(errnoState, 0L);
            if (errno != Libc.EINTR) return -errno;
        }
    }

    /**
     * Sends {@code from} on socket {@code fd} without raising SIGPIPE; returns the count sent, or minus the errno
     * (EINTR is retried). A non-blocking socket may take only part.
     */
    public long send(int fd, MemorySegment from) {
        while (true) {
            long n;
            try {
                n = (long) SEND.invokeExact(errnoState, fd, from, from.byteSize(), MSG_NOSIGNAL);
            } catch (Throwable t) {
                throw new IllegalStateException("send(fd " + fd + ") failed: " + t, t);
            }
            if (n >= 0) return n;
            int errno = (int) ERRNO.get(errnoState, 0L);
            if (errno != Libc.EINTR) return -errno;
        }
    }

    /** "ECONNRESET (Connection reset by peer)", for an errno returned negated by {@link #read} or {@link #send}. */
    public static String describe(int errno) {
        return Libc.describe(errno);
    }

    @Override
    public void close() {
        arena.close();
    }
}
