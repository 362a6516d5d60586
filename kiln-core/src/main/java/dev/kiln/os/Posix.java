package dev.kiln.os;

import dev.kiln.ExitStatus;
import dev.kiln.KilnException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.file.Path;
import java.util.Objects;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The few POSIX calls the JDK lacks (raw pipes and socket pairs to hand to children, signals and wait statuses of
 * processes the JDK did not start, FIFOs), as thin FFM downcalls that throw {@link KilnException} naming the call,
 * its arguments and the errno.
 *
 * <p>Blocking calls ({@link #read}, {@link #writeFully}, {@link #waitpid} without {@code noHang}) pin the carrier
 * when made from a virtual thread, because a native downcall cannot unmount; prefer a platform thread for readers
 * that block for long.
 */
public final class Posix {
    public static final int SIGINT = 2, SIGKILL = 9, SIGTERM = 15, SIGCONT = 18, SIGSTOP = 19;

    static final int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_CREAT = 0x40, O_APPEND = 0x400, O_CLOEXEC = 0x80000;
    static final int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000;
    private static final int F_GETFD = 1, F_SETFD = 2, F_GETFL = 3, F_SETFL = 4, FD_CLOEXEC = 1, SHUT_RDWR = 2;
    private static final int O_NONBLOCK = 0x800, EFD_NONBLOCK = 0x800, EFD_CLOEXEC = 0x80000;
    private static final int WNOHANG = 1, WEXITED = 4, WNOWAIT = 0x01000000, P_PID = 1, RLIMIT_NOFILE = 7;
    private static final int SIGINFO_SIZE = 128;
    private static final int LOCK_SH = 1, LOCK_EX = 2, LOCK_NB = 4, EWOULDBLOCK = 11;

    private static final MethodHandle PIPE2 = Libc.withErrno("pipe2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle SOCKETPAIR = Libc.withErrno("socketpair",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS));
    private static final MethodHandle READ = Libc.withErrno("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE = Libc.withErrno("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle KILL = Libc.withErrno("kill", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle WAITPID = Libc.withErrno("waitpid", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle WAITID = Libc.withErrno("waitid",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle OPEN = Libc.withErrno("open",
            FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT), Linker.Option.firstVariadicArg(2));
    private static final MethodHandle MKFIFO = Libc.withErrno("mkfifo", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle FCNTL = Libc.withErrno("fcntl",
            FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT), Linker.Option.firstVariadicArg(2));
    private static final MethodHandle FLOCK = Libc.withErrno("flock", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SHUTDOWN = Libc.withErrno("shutdown", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle POLL = Libc.withErrno("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
    private static final MethodHandle EVENTFD = Libc.withErrno("eventfd", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle EXIT = Libc.function("_exit", FunctionDescriptor.ofVoid(JAVA_INT));
    private static final MethodHandle GETPID = Libc.function("getpid", FunctionDescriptor.of(JAVA_INT));
    private static final MethodHandle GETRLIMIT = Libc.withErrno("getrlimit", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));

    private Posix() {}

    /** A pipe whose ends are close-on-exec: {@code [0]} is the read end, {@code [1]} the write end. */
    public static Fd[] pipe() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            Libc.check(Libc.call(state -> (int) PIPE2.invokeExact(state, fds, O_CLOEXEC)), "pipe2(O_CLOEXEC)");
            return new Fd[] {Fd.adopt(fds.getAtIndex(JAVA_INT, 0)), Fd.adopt(fds.getAtIndex(JAVA_INT, 1))};
        }
    }

    /** A connected pair of close-on-exec AF_UNIX stream sockets, e.g. a "cable" between two VMs. */
    public static Fd[] socketPair() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment fds = arena.allocate(JAVA_INT, 2);
            Libc.check(Libc.call(state -> (int) SOCKETPAIR.invokeExact(state, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds)),
                    "socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC)");
            return new Fd[] {Fd.adopt(fds.getAtIndex(JAVA_INT, 0)), Fd.adopt(fds.getAtIndex(JAVA_INT, 1))};
        }
    }

    /** Reads up to {@code len} bytes into {@code buf[off..]}; returns how many, 0 at end of file. Retries on EINTR. */
    public static int read(Fd fd, byte[] buf, int off, int len) {
        Objects.checkFromIndexSize(off, len, buf.length);
        if (len == 0) return 0;
        int number = fd.number();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(len);
            int n = (int) Libc.check(Libc.callRetrying(state -> (long) READ.invokeExact(state, number, buffer, (long) len)),
                    "read(fd " + number + ", " + len + " bytes)");
            MemorySegment.copy(buffer, JAVA_BYTE, 0, buf, off, n);
            return n;
        }
    }

    /**
     * Waits until {@code fd} has data to read, or its peer hung up; false when {@code timeout} passed first.
     * Lets a blocking {@link #read} have a deadline.
     */
    public static boolean awaitReadable(Fd fd, java.time.Duration timeout) {
        int number = fd.number();
        long deadline = System.nanoTime() + timeout.toNanos();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment pollfd = arena.allocate(8, 4); // struct pollfd { int fd; short events; short revents; }
            pollfd.set(JAVA_INT, 0, number);
            pollfd.set(java.lang.foreign.ValueLayout.JAVA_SHORT, 4, (short) 1); // POLLIN
            while (true) {
                int ms = (int) Math.min(Integer.MAX_VALUE, Math.max(0, (deadline - System.nanoTime() + 999_999) / 1_000_000));
                long n = Libc.call(state -> (int) POLL.invokeExact(state, pollfd, 1L, ms));
                if (n == -Libc.EINTR) continue;
                Libc.check(n, "poll(fd " + number + ", " + ms + " ms)");
                if (n > 0) return true;
                if (System.nanoTime() - deadline >= 0) return false;
            }
        }
    }

    /** Writes all of {@code buf[off..off+len)}, looping over short writes and retrying on EINTR. */
    public static void writeFully(Fd fd, byte[] buf, int off, int len) {
        Objects.checkFromIndexSize(off, len, buf.length);
        int number = fd.number();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(Math.max(1, len));
            MemorySegment.copy(buf, off, buffer, JAVA_BYTE, 0, len);
            long done = 0;
            while (done < len) {
                MemorySegment rest = buffer.asSlice(done);
                long want = len - done;
                done += Libc.check(Libc.callRetrying(state -> (long) WRITE.invokeExact(state, number, rest, want)),
                        "write(fd " + number + ", " + want + " bytes)");
            }
        }
    }

    /** Sends {@code signal} to process {@code pid}; returns false if no such process exists (ESRCH). */
    public static boolean kill(long pid, int signal) {
        if (pid <= 0 || pid > Integer.MAX_VALUE)
            throw new IllegalArgumentException("kill needs a positive pid (use killGroup for groups), got " + pid);
        return sendSignal((int) pid, signal, "kill(pid " + pid + ", " + Libc.signalName(signal) + ")");
    }

    /** Sends {@code signal} to every process in group {@code pgid}; returns false if the group is empty (ESRCH). */
    public static boolean killGroup(long pgid, int signal) {
        if (pgid <= 1 || pgid > Integer.MAX_VALUE)
            throw new IllegalArgumentException("killGroup needs a process group id > 1, got " + pgid);
        return sendSignal((int) -pgid, signal, "kill(process group " + pgid + ", " + Libc.signalName(signal) + ")");
    }

    private static boolean sendSignal(int target, int signal, String what) {
        long r = Libc.call(state -> (int) KILL.invokeExact(state, target, signal));
        if (r == -Libc.ESRCH) return false;
        Libc.check(r, what);
        return true;
    }

    /**
     * Reaps child {@code pid} and decodes how it ended; with {@code noHang}, returns null while it still runs.
     * Retries on EINTR. Each child can be reaped once: a second call fails with ECHILD.
     */
    public static ExitStatus waitpid(long pid, boolean noHang) {
        int p = checkPid(pid);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment status = arena.allocate(JAVA_INT);
            int options = noHang ? WNOHANG : 0;
            long r = Libc.check(Libc.callRetrying(state -> (int) WAITPID.invokeExact(state, p, status, options)),
                    "waitpid(pid " + pid + (noHang ? ", WNOHANG)" : ")"));
            return r == 0 ? null : decode(status.get(JAVA_INT, 0));
        }
    }

    /** Decodes a raw status from wait(2); only exits and deaths, since Kiln never asks for stop reports. */
    static ExitStatus decode(int status) {
        int low = status & 0x7f;
        if (low == 0) return ExitStatus.exitedWith((status >> 8) & 0xff);
        if (low != 0x7f) return ExitStatus.killedBy(low, (status & 0x80) != 0);
        throw new IllegalArgumentException("wait status 0x" + Integer.toHexString(status) + " is a stop, not an exit");
    }

    /** "SIGKILL", or "signal 77" for numbers the C library has no name for. */
    public static String signalName(int signal) {
        return Libc.signalName(signal);
    }

    /**
     * Blocks until child {@code pid} has ended but leaves it a zombie, so its pid cannot be reused until it is
     * reaped; returns false if it is not (or no longer) our child.
     */
    static boolean awaitExitWithoutReaping(long pid) {
        int p = checkPid(pid);
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment info = arena.allocate(SIGINFO_SIZE, 8);
            long r = Libc.callRetrying(state -> (int) WAITID.invokeExact(state, P_PID, p, info, WEXITED | WNOWAIT));
            if (r == -Libc.ECHILD) return false;
            Libc.check(r, "waitid(P_PID, " + pid + ", WEXITED|WNOWAIT)");
            return true;
        }
    }

    /** Opens an existing file, close-on-exec, for reading or for reading and writing. */
    public static Fd open(Path path, boolean writable) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cPath = arena.allocateFrom(path.toString());
            int flags = (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC;
            int fd = (int) Libc.check(Libc.callRetrying(state -> (int) OPEN.invokeExact(state, cPath, flags, 0)),
                    "open(" + path + (writable ? ", O_RDWR)" : ", O_RDONLY)"));
            return Fd.adopt(fd);
        }
    }

    /**
     * Takes a BSD lock ({@code flock}) on the open file, shared or exclusive, without waiting: false when another
     * open file holds a lock that conflicts. Such locks belong to the open file, so a process's other opens conflict
     * too; they go when the last descriptor of the open file closes (and so when the process dies). They do not
     * interfere with the byte-range locks QEMU takes on its images.
     */
    public static boolean tryFlock(Fd fd, boolean shared) {
        int number = fd.number();
        int op = (shared ? LOCK_SH : LOCK_EX) | LOCK_NB;
        long r = Libc.callRetrying(state -> (int) FLOCK.invokeExact(state, number, op));
        if (r == -EWOULDBLOCK) return false;
        Libc.check(r, "flock(fd " + number + (shared ? ", LOCK_SH)" : ", LOCK_EX)"));
        return true;
    }

    /** Creates a FIFO at {@code path}; {@code mode} (e.g. 0600) is reduced by the process umask. */
    public static void mkfifo(Path path, int mode) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment cPath = arena.allocateFrom(path.toString());
            Libc.check(Libc.call(state -> (int) MKFIFO.invokeExact(state, cPath, mode)),
                    "mkfifo(" + path + ", 0" + Integer.toOctalString(mode) + ")");
        }
    }

    /** Sets or clears FD_CLOEXEC, i.e. whether children started by exec inherit {@code fd}. */
    public static void setCloexec(Fd fd, boolean on) {
        int number = fd.number();
        int flags = (int) Libc.check(Libc.call(state -> (int) FCNTL.invokeExact(state, number, F_GETFD, 0)),
                "fcntl(fd " + number + ", F_GETFD)");
        int wanted = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
        if (wanted == flags) return;
        Libc.check(Libc.call(state -> (int) FCNTL.invokeExact(state, number, F_SETFD, wanted)),
                "fcntl(fd " + number + ", F_SETFD, " + (on ? "FD_CLOEXEC)" : "0)"));
    }

    /**
     * Sets or clears O_NONBLOCK. The flag belongs to the open file, so it is shared with duplicates of {@code fd}
     * (but not with the other end of a pipe or socket pair).
     */
    public static void setNonBlocking(Fd fd, boolean on) {
        int number = fd.number();
        int flags = (int) Libc.check(Libc.call(state -> (int) FCNTL.invokeExact(state, number, F_GETFL, 0)),
                "fcntl(fd " + number + ", F_GETFL)");
        int wanted = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (wanted == flags) return;
        Libc.check(Libc.call(state -> (int) FCNTL.invokeExact(state, number, F_SETFL, wanted)),
                "fcntl(fd " + number + ", F_SETFL, " + (on ? "O_NONBLOCK)" : "~O_NONBLOCK)"));
    }

    /**
     * A close-on-exec, non-blocking eventfd: a counter another thread bumps ({@link #signalEventFd}) to wake a
     * thread that polls it, in one descriptor where a pipe needs two.
     */
    public static Fd eventFd() {
        int number = (int) Libc.check(Libc.call(state -> (int) EVENTFD.invokeExact(state, 0, EFD_CLOEXEC | EFD_NONBLOCK)),
                "eventfd(0, EFD_CLOEXEC|EFD_NONBLOCK)");
        return Fd.adopt(number);
    }

    /** Adds one to an eventfd's counter, making it readable. */
    public static void signalEventFd(Fd eventFd) {
        int number = eventFd.number();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment one = arena.allocate(JAVA_LONG);
            one.set(JAVA_LONG, 0, 1L);
            long r = Libc.callRetrying(state -> (long) WRITE.invokeExact(state, number, one, 8L));
            // EAGAIN means the counter is at its maximum: it is readable anyway, which is all a wake-up needs.
            if (r != -Poller.EAGAIN) Libc.check(r, "write(eventfd " + number + ", 1)");
        }
    }

    /** Shuts a socket down both ways; the portable way to wake a thread blocked reading it (close does not). */
    public static void shutdown(Fd fd) {
        int number = fd.number();
        Libc.check(Libc.call(state -> (int) SHUTDOWN.invokeExact(state, number, SHUT_RDWR)),
                "shutdown(fd " + number + ", SHUT_RDWR)");
    }

    public static long getpid() {
        return Libc.plain(() -> (int) GETPID.invokeExact());
    }

    /** The soft RLIMIT_NOFILE: descriptor numbers at or above it cannot be created. */
    static long openFileLimit() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment rlimit = arena.allocate(JAVA_LONG, 2);
            Libc.check(Libc.call(state -> (int) GETRLIMIT.invokeExact(state, RLIMIT_NOFILE, rlimit)), "getrlimit(RLIMIT_NOFILE)");
            long soft = rlimit.getAtIndex(JAVA_LONG, 0);
            return soft < 0 ? Long.MAX_VALUE : soft; // RLIM_INFINITY is all ones
        }
    }

    private static int checkPid(long pid) {
        if (pid <= 0 || pid > Integer.MAX_VALUE) throw new IllegalArgumentException("not a process id: " + pid);
        return (int) pid;
    }

    /**
     * Ends the process now with {@code code} ({@code _exit}): no shutdown hooks, no JVM exit sequence. For a
     * command-line tool that has cleaned up: the JVM's own exit waits ~300 ms for its I/O poller threads,
     * which sit in native calls. Flush what must be seen first.
     */
    public static void exitImmediately(int code) {
        Libc.plain(() -> {
            EXIT.invokeExact(code);
            return 0;
        });
    }
}
