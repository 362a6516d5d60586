package dev.kiln.agent;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;
import java.util.function.Supplier;

/**
 * A real qemu-guest-agent running on the host, listening on a unix socket in a private directory: the
 * same agent and protocol as in a guest, without a VM. Killed by {@link #close()}.
 */
final class HostQemuGa implements AutoCloseable {
    static final Path BINARY = Path.of("/usr/sbin/qemu-ga");

    final Path dir;
    final Path socket;
    final Path log;
    private final Process process;

    private HostQemuGa(Path dir, Process process) {
        this.dir = dir;
        this.socket = dir.resolve("qga.sock");
        this.log = dir.resolve("qga.log");
        this.process = process;
    }

    static boolean installed() {
        return Files.isExecutable(BINARY);
    }

    /** Starts the agent; {@code prefix} (say, an unshare wrapper) runs before it, {@code extra} are more options. */
    static HostQemuGa start(Path dir, List<String> prefix, List<String> extra) {
        try {
            Files.createDirectories(dir.resolve("state"));
            List<String> cmd = new ArrayList<>(prefix);
            cmd.addAll(List.of(BINARY.toString(), "-m", "unix-listen", "-p", dir.resolve("qga.sock").toString(),
                    "-t", dir.resolve("state").toString(), "-f", dir.resolve("qga.pid").toString()));
            cmd.addAll(extra);
            Process p = new ProcessBuilder(cmd).redirectErrorStream(true)
                    .redirectOutput(dir.resolve("qga.log").toFile()).start();
            return new HostQemuGa(dir, p);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static HostQemuGa start(Path dir) {
        return start(dir, List.of(), List.of());
    }

    long pid() {
        return process.pid();
    }

    boolean alive() {
        return process.isAlive();
    }

    /** Opens a connection to the agent's socket, as a QEMU chardev would hand one over. */
    SocketChannel connect() {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot connect to " + socket, e);
        }
    }

    /**
     * Connects once the agent listens, retrying every millisecond while its socket is missing or refuses; fails
     * after {@code timeout} with the agent's log.
     */
    SocketChannel connectWhenListening(Duration timeout) {
        long end = System.nanoTime() + timeout.toNanos();
        while (true) {
            try {
                return SocketChannel.open(UnixDomainSocketAddress.of(socket));
            } catch (IOException e) {
                if (!process.isAlive() || System.nanoTime() - end > 0) {
                    throw new AssertionError("qemu-ga did not listen on " + socket + " within " + timeout
                            + (process.isAlive() ? "" : " (it exited)") + "; last: " + e + "; its log:\n" + logText(), e);
                }
                LockSupport.parkNanos(1_000_000);
            }
        }
    }

    QgaGuest guest() {
        return guest(null);
    }

    /** A client whose VMM is this agent: {@code vmmState} says what became of it, as a machine's would. */
    QgaGuest guest(Supplier<String> vmmState) {
        return new QgaGuest(this::connect, () -> "console tail of the host agent test", vmmState, "host-qemu-ga");
    }

    /** How the agent ended ("qemu-ga pid 123 killed by signal 9"), waiting up to {@code wait}; null while it runs. */
    String exitState(Duration wait) {
        try {
            if (!process.waitFor(wait.toNanos(), TimeUnit.NANOSECONDS)) return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
        int code = process.exitValue();
        return "qemu-ga pid " + process.pid() + (code > 128 ? " killed by signal " + (code - 128) : " exited with " + code);
    }

    String logText() {
        try {
            return Files.exists(log) ? Files.readString(log) : "";
        } catch (IOException e) {
            return "(cannot read " + log + ": " + e + ")";
        }
    }

    /** Sends a signal by name (STOP, CONT) to the agent. */
    void signal(String name) throws IOException, InterruptedException {
        Process kill = new ProcessBuilder("kill", "-" + name, Long.toString(process.pid())).inheritIO().start();
        if (!kill.waitFor(5, TimeUnit.SECONDS) || kill.exitValue() != 0) throw new IOException("kill -" + name + " failed");
    }

    /** SIGKILL, as a crashing guest would end it. */
    void kill() {
        process.destroyForcibly();
        try {
            process.waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    @Override
    public void close() {
        kill();
    }
}
