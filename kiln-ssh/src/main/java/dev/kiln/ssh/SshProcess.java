package dev.kiln.ssh;

import dev.kiln.ExecRequest;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.Text;
import dev.kiln.support.Deadline;
import org.apache.sshd.client.channel.ChannelExec;
import org.apache.sshd.client.channel.ClientChannelEvent;
import org.apache.sshd.common.channel.ChannelPipedInputStream;

import java.io.FilterOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.EnumSet;
import java.util.List;
import java.util.OptionalInt;
import java.util.Set;

/**
 * A command on an exec channel of its own, under {@link ShellCommand#WRAPPER}: its pid is the wrapper's first line, its
 * exit the channel's exit-status (or exit-signal), its streams the channel's. The channel's window holds back a
 * command whose output is not read, in the guest.
 */
final class SshProcess implements GuestProcess {
    private static final Set<ClientChannelEvent> CLOSED = EnumSet.of(ClientChannelEvent.CLOSED);

    private final MinaSshChannel ssh;
    private final ChannelExec channel;
    private final List<String> argv;
    private final long pid;
    private final InputStream stdout, stderr;
    private final OutputStream stdin;
    private final List<Thread> pumps = new ArrayList<>();

    /**
     * Opens the channel and reads the pid line. Output goes to {@code out}/{@code err} when given, else to the handle's
     * streams. The request's stdin bytes are written and closed; without them stdin is closed at once unless
     * {@code openStdin}. Throws {@link GuestException} when the command does not exist.
     */
    static SshProcess start(MinaSshChannel ssh, ExecRequest req, StreamSink out, StreamSink err, boolean openStdin,
                            Deadline deadline) {
        ChannelExec channel = ssh.openExec(ShellCommand.of(req), deadline);
        try {
            String first = firstLine(channel, deadline, ssh.name(), req.argv());
            if (ShellCommand.NOT_FOUND.equals(first)) {
                throw new GuestException("cannot run " + req.argv() + " in " + ssh.name() + ": '" + req.argv().getFirst()
                        + "' is not a command there (not found, or not executable)");
            }
            if (first != null && !first.matches("\\d{1,19}")) {
                throw new GuestException("cannot run " + req.argv() + " in " + ssh.name() + ": the guest's shell printed '"
                        + Text.tail(first, 200) + "' where the command's pid was expected (does the login shell print something?)");
            }
            long pid = first == null ? -1 : Long.parseLong(first); // no line: it ended before its exec (cd failed, say)
            return new SshProcess(ssh, channel, req, pid, out, err, openStdin);
        } catch (RuntimeException e) {
            channel.close(true);
            throw e;
        }
    }

    private SshProcess(MinaSshChannel ssh, ChannelExec channel, ExecRequest req, long pid, StreamSink out, StreamSink err,
                       boolean openStdin) {
        this.ssh = ssh;
        this.channel = channel;
        this.argv = req.argv();
        this.pid = pid;
        String what = " of " + pid + " " + argv.getFirst();
        if (out != null) pumps.add(out.pump(channel.getInvertedOut(), "kiln-ssh-stdout" + what));
        if (err != null) pumps.add(err.pump(channel.getInvertedErr(), "kiln-ssh-stderr" + what));
        this.stdout = out == null ? channel.getInvertedOut() : InputStream.nullInputStream();
        this.stderr = err == null ? channel.getInvertedErr() : InputStream.nullInputStream();
        OutputStream raw = channel.getInvertedIn();
        // Each write goes out at once, as a pipe's would: MINA's stream would hold it until a packet is full.
        this.stdin = new FilterOutputStream(raw) {
            @Override
            public void write(byte[] b, int off, int len) throws IOException {
                try {
                    raw.write(b, off, len);
                    raw.flush();
                } catch (IOException e) {
                    throw new IOException("cannot write to the stdin of " + argv + " in " + ssh.name() + ": " + e.getMessage(), e);
                }
            }
        };
        byte[] bytes = req.stdin();
        if (bytes != null) {
            // On a thread of its own: the command may answer before it read it all (cat), and the windows are bounded.
            Thread.ofVirtual().name("kiln-ssh-stdin" + what).start(() -> {
                try (raw) {
                    raw.write(bytes);
                } catch (IOException e) {
                    // it exited without reading it all, as a pipe's writer would see
                }
            });
        } else if (!openStdin) {
            closeStdin();
        }
    }

    /** The wrapper's first stdout line: a pid, {@link ShellCommand#NOT_FOUND}, or null when stdout ended first. */
    private static String firstLine(ChannelExec channel, Deadline deadline, String name, List<String> argv) {
        ChannelPipedInputStream in = (ChannelPipedInputStream) channel.getInvertedOut();
        StringBuilder line = new StringBuilder();
        try {
            in.setTimeout(Math.max(1, deadline.remaining().toMillis()));
            for (int b; (b = in.read()) != '\n'; ) {
                if (b < 0) return line.isEmpty() ? null : line.toString();
                line.append((char) b);
                if (line.length() > 20) throw new GuestException("the guest shell of " + name + " did not report the pid of "
                        + argv + " but said '" + line + "…'");
            }
            return line.toString();
        } catch (IOException e) {
            if (deadline.expired()) throw new WaitTimeoutException("the guest shell of " + name + " to start " + argv, deadline.total(), line.toString());
            throw new GuestException("lost " + argv + " in " + name + " as it started: " + e.getMessage(), null, e);
        } finally {
            in.setTimeout(0);
        }
    }

    /** Waits until it exited, its output ended and was pumped; whether that happened before the deadline. */
    boolean awaitDone(Deadline deadline) {
        if (!channel.waitFor(CLOSED, MinaSshChannel.left(deadline)).contains(ClientChannelEvent.CLOSED)) return false;
        for (Thread t : pumps) {
            try {
                if (!t.join(deadline.remaining())) return false;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KilnException("interrupted while waiting for " + argv + " in " + ssh.name(), e);
            }
        }
        return true;
    }

    /** Whether the process has exited (it may leave something that holds its output open). */
    boolean exited() {
        return channel.getExitStatus() != null || channel.getExitSignal() != null;
    }

    /** Its exit status, 128 + n when signal n killed it; throws when the channel ended without one. */
    int status() {
        Integer status = channel.getExitStatus();
        if (status != null) return status;
        String signal = channel.getExitSignal();
        if (signal != null) return 128 + ShellCommand.signalNumber(signal);
        throw new GuestException("lost track of " + pid + " " + argv + " in " + ssh.name()
                + ": the SSH channel closed without its exit status (the connection ended?)");
    }

    /** The signal that killed it as sshd reports it, else as a shell reports one (a status above 128), else 0. */
    int signal() {
        String name = channel.getExitSignal();
        if (name != null) return ShellCommand.signalNumber(name);
        int status = status();
        return status > 128 && status <= 128 + 64 ? status - 128 : 0;
    }

    /** Whether its channel is still open: it runs, or something it started holds its output. */
    boolean channelOpen() {
        return !channel.isClosing() && !channel.isClosed();
    }

    void closeStdin() {
        try {
            channel.getInvertedIn().close(); // end of file for the command
        } catch (IOException e) {
            // the channel is gone already
        }
    }

    // ---- GuestProcess

    @Override
    public long pid() { return pid; }

    @Override
    public List<String> argv() { return argv; }

    @Override
    public InputStream stdout() { return stdout; }

    @Override
    public InputStream stderr() { return stderr; }

    @Override
    public OutputStream stdin() { return stdin; }

    @Override
    public boolean isAlive() { return !exited() && !channel.isClosed(); }

    @Override
    public OptionalInt exitCode() {
        return exited() ? OptionalInt.of(status()) : OptionalInt.empty();
    }

    @Override
    public int waitFor(Duration timeout) {
        if (!awaitDone(Deadline.after(timeout))) {
            throw new WaitTimeoutException("process " + pid + " " + argv + " in " + ssh.name() + " to " + (exited()
                    ? "close its stdout and stderr (it exited " + status() + "; something it started holds them, or they were not read)"
                    : "exit"), timeout, "");
        }
        return status();
    }

    @Override
    public void signal(int signal) {
        if (signal < 1 || signal > 64) throw new IllegalArgumentException("signal must be 1..64: " + signal);
        if (pid < 0 || !isAlive()) return;
        ssh.runQuietly("kill -" + signal + " " + pid + " 2>/dev/null", " to send signal " + signal + " to pid " + pid);
    }

    @Override
    public void kill() {
        if (pid < 0 || channel.isClosed()) return;
        ssh.killTrees(List.of(pid), "pid " + pid + " " + argv + " and what it started");
    }

    @Override
    public void close() {
        try {
            if (!channel.isClosed()) kill();
        } catch (KilnException e) {
            // the session is gone, and the command with it
        } finally {
            release();
        }
    }

    /** Closes the channel and the streams; the command, if it still runs, is not this handle's any more. */
    void release() {
        channel.close(true);
        for (InputStream in : List.of(channel.getInvertedOut(), channel.getInvertedErr())) {
            try {
                in.close();
            } catch (IOException e) {
                // nothing to release
            }
        }
        ssh.forget(this);
    }
}
