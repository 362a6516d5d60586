package dev.kiln.os;

import dev.kiln.KilnException;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

/**
 * A minimal AF_UNIX stream client for the one thing the JDK's {@code SocketChannel} cannot do: pass file
 * descriptors (SCM_RIGHTS), as QEMU's {@code getfd}/{@code add-fd} need. The send and receive methods work on any
 * AF_UNIX stream socket, including a {@link Posix#socketPair()} end.
 */
public final class UnixSocket {
    /** What one {@code recvmsg} returned: the bytes, and the descriptors that came with them (close-on-exec). */
    public record Received(byte[] data, List<Fd> fds) {
        public Received {
            fds = List.copyOf(fds);
        }

        /** True when the peer has closed its end and nothing more will arrive. */
        public boolean endOfStream() {
            return data.length == 0 && fds.isEmpty();
        }
    }

    /** sun_path is 108 bytes and needs its terminating NUL. */
    public static final int MAX_PATH_BYTES = 107;
    /** The kernel's SCM_MAX_FD: more descriptors than this in one message fail with EINVAL. */
    public static final int MAX_FDS_PER_MESSAGE = 253;

    private static final int SOL_SOCKET = 1, SCM_RIGHTS = 1;
    private static final int MSG_CTRUNC = 0x8, MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000;
    // x86_64 layouts: msghdr {name, namelen(+pad), iov, iovlen, control, controllen, flags(+pad)}; iovec {base, len};
    // cmsghdr {size_t len; int level; int type;} followed by data aligned to 8.
    private static final long MSGHDR_SIZE = 56, MSG_IOV = 16, MSG_IOVLEN = 24, MSG_CONTROL = 32, MSG_CONTROLLEN = 40,
            MSG_FLAGS = 48, IOVEC_SIZE = 16, CMSGHDR_SIZE = 16, SOCKADDR_UN_SIZE = 110, SUN_PATH = 2;

    private static final MethodHandle SOCKET = Libc.withErrno("socket", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle CONNECT = Libc.withErrno("connect", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle BIND = Libc.withErrno("bind", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle LISTEN = Libc.withErrno("listen", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle SENDMSG = Libc.withErrno("sendmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));
    private static final MethodHandle RECVMSG = Libc.withErrno("recvmsg", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_INT));

    private UnixSocket() {}

    /** Connects a close-on-exec AF_UNIX stream socket to the socket file at {@code path}. */
    public static Fd connect(Path path) {
        byte[] name = socketName(path);
        Fd socket = newSocket();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = address(arena, name);
            int length = (int) SUN_PATH + name.length + 1;
            int number = socket.number();
            long r = Libc.call(state -> (int) CONNECT.invokeExact(state, number, address, length));
            // An interrupted connect goes on in the background; asking again reports how it went.
            while (r == -Libc.EINTR) r = Libc.call(state -> (int) CONNECT.invokeExact(state, number, address, length));
            if (r != -Libc.EISCONN) Libc.check(r, "connect(" + path + ")");
            return socket;
        } catch (RuntimeException e) {
            socket.close();
            throw e;
        }
    }

    /**
     * A close-on-exec AF_UNIX stream socket listening at {@code path} (which must not exist), as an fd to hand to a
     * child that accepts on it (a daemon started with {@code --fd}): the socket is there before the child runs.
     */
    public static Fd listen(Path path) {
        byte[] name = socketName(path);
        Fd socket = newSocket();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment address = address(arena, name);
            int length = (int) SUN_PATH + name.length + 1, number = socket.number();
            Libc.check(Libc.call(state -> (int) BIND.invokeExact(state, number, address, length)), "bind(" + path + ")");
            Libc.check(Libc.call(state -> (int) LISTEN.invokeExact(state, number, 16)), "listen(" + path + ")");
            return socket;
        } catch (RuntimeException e) {
            socket.close();
            throw e;
        }
    }

    private static byte[] socketName(Path path) {
        byte[] name = path.toString().getBytes(StandardCharsets.UTF_8);
        if (name.length == 0) throw new IllegalArgumentException("empty unix socket path");
        if (name.length > MAX_PATH_BYTES)
            throw new KilnException("unix socket path " + path + " is " + name.length + " bytes, but sockaddr_un holds at most "
                    + MAX_PATH_BYTES + "; use a shorter directory or a relative path");
        return name;
    }

    private static Fd newSocket() {
        return Fd.adopt((int) Libc.check(
                Libc.call(state -> (int) SOCKET.invokeExact(state, Posix.AF_UNIX, Posix.SOCK_STREAM | Posix.SOCK_CLOEXEC, 0)),
                "socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC)"));
    }

    private static MemorySegment address(Arena arena, byte[] name) {
        MemorySegment address = arena.allocate(SOCKADDR_UN_SIZE, 2);
        address.set(JAVA_SHORT, 0, (short) Posix.AF_UNIX);
        MemorySegment.copy(name, 0, address, JAVA_BYTE, SUN_PATH, name.length);
        return address;
    }

    /**
     * Sends all of {@code data} with {@code fds} attached to its first byte in one SCM_RIGHTS message. The receiver
     * gets its own duplicates; the caller still owns (and should close) {@code fds}.
     */
    public static void sendWithFds(Fd socket, byte[] data, Fd... fds) {
        if (data.length == 0) throw new IllegalArgumentException("a stream socket sends descriptors only along with at least one byte");
        if (fds.length > MAX_FDS_PER_MESSAGE)
            throw new IllegalArgumentException(fds.length + " descriptors, but one message carries at most " + MAX_FDS_PER_MESSAGE);
        int number = socket.number();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(data.length);
            MemorySegment.copy(data, 0, buffer, JAVA_BYTE, 0, data.length);
            MemorySegment control = MemorySegment.NULL;
            if (fds.length > 0) {
                control = arena.allocate(cmsgSpace(fds.length), 8);
                control.set(JAVA_LONG, 0, CMSGHDR_SIZE + 4L * fds.length);
                control.set(JAVA_INT, 8, SOL_SOCKET);
                control.set(JAVA_INT, 12, SCM_RIGHTS);
                for (int i = 0; i < fds.length; i++) control.set(JAVA_INT, CMSGHDR_SIZE + 4L * i, fds[i].number());
            }
            MemorySegment iov = arena.allocate(IOVEC_SIZE, 8);
            MemorySegment msg = arena.allocate(MSGHDR_SIZE, 8);
            msg.set(ADDRESS, MSG_IOV, iov);
            msg.set(JAVA_LONG, MSG_IOVLEN, 1);
            long sent = 0;
            while (sent < data.length) {
                iov.set(ADDRESS, 0, buffer.asSlice(sent));
                iov.set(JAVA_LONG, 8, data.length - sent);
                // The descriptors travel with the first chunk only; a short send must not repeat them.
                msg.set(ADDRESS, MSG_CONTROL, sent == 0 ? control : MemorySegment.NULL);
                msg.set(JAVA_LONG, MSG_CONTROLLEN, sent == 0 ? control.byteSize() : 0);
                sent += Libc.check(Libc.callRetrying(state -> (long) SENDMSG.invokeExact(state, number, msg, MSG_NOSIGNAL)),
                        "sendmsg(fd " + number + ", " + (data.length - sent) + " bytes, fds " + describe(fds) + ")");
            }
        }
    }

    /**
     * Receives up to {@code maxBytes} bytes and up to {@code maxFds} descriptors in one {@code recvmsg}. If more
     * descriptors arrived than {@code maxFds}, the kernel drops the rest, so this closes the ones it got and throws.
     */
    public static Received receiveWithFds(Fd socket, int maxBytes, int maxFds) {
        if (maxBytes < 1) throw new IllegalArgumentException("maxBytes must be positive: " + maxBytes);
        if (maxFds < 0 || maxFds > MAX_FDS_PER_MESSAGE)
            throw new IllegalArgumentException("maxFds must be within 0.." + MAX_FDS_PER_MESSAGE + ": " + maxFds);
        int number = socket.number();
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buffer = arena.allocate(maxBytes);
            MemorySegment control = maxFds == 0 ? MemorySegment.NULL : arena.allocate(cmsgSpace(maxFds), 8);
            MemorySegment iov = arena.allocate(IOVEC_SIZE, 8);
            iov.set(ADDRESS, 0, buffer);
            iov.set(JAVA_LONG, 8, maxBytes);
            MemorySegment msg = arena.allocate(MSGHDR_SIZE, 8);
            msg.set(ADDRESS, MSG_IOV, iov);
            msg.set(JAVA_LONG, MSG_IOVLEN, 1);
            msg.set(ADDRESS, MSG_CONTROL, control);
            msg.set(JAVA_LONG, MSG_CONTROLLEN, control.byteSize());
            int n = (int) Libc.check(
                    Libc.callRetrying(state -> (long) RECVMSG.invokeExact(state, number, msg, MSG_CMSG_CLOEXEC)),
                    "recvmsg(fd " + number + ", " + maxBytes + " bytes, " + maxFds + " fds)");
            List<Fd> fds = new ArrayList<>();
            long controlLength = msg.get(JAVA_LONG, MSG_CONTROLLEN);
            for (long at = 0; at + CMSGHDR_SIZE <= controlLength; ) {
                long length = control.get(JAVA_LONG, at);
                if (length < CMSGHDR_SIZE || at + length > controlLength) break;
                if (control.get(JAVA_INT, at + 8) == SOL_SOCKET && control.get(JAVA_INT, at + 12) == SCM_RIGHTS)
                    for (long i = 0; i < (length - CMSGHDR_SIZE) / 4; i++)
                        fds.add(Fd.adopt(control.get(JAVA_INT, at + CMSGHDR_SIZE + 4 * i)));
                at += align8(length);
            }
            if ((msg.get(JAVA_INT, MSG_FLAGS) & MSG_CTRUNC) != 0) {
                fds.forEach(Fd::close);
                throw new KilnException("recvmsg(fd " + number + "): more than " + maxFds
                        + " descriptors arrived and the kernel discarded the excess; receive with a larger maxFds");
            }
            byte[] data = new byte[n];
            MemorySegment.copy(buffer, JAVA_BYTE, 0, data, 0, n);
            return new Received(data, fds);
        }
    }

    private static long cmsgSpace(int fdCount) {
        return CMSGHDR_SIZE + align8(4L * fdCount);
    }

    private static long align8(long n) {
        return (n + 7) & ~7L;
    }

    private static String describe(Fd[] fds) {
        StringBuilder b = new StringBuilder("[");
        for (Fd fd : fds) b.append(b.length() > 1 ? ", " : "").append(fd.number());
        return b.append(']').toString();
    }
}
