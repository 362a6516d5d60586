package dev.kiln.ssh;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.SshChannel;
import dev.kiln.Text;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;
import dev.kiln.vmm.spi.SshConnector;
import org.apache.sshd.client.SshClient;
import org.apache.sshd.client.channel.ChannelExec;
import org.apache.sshd.client.channel.ClientChannelEvent;
import org.apache.sshd.client.session.ClientSession;
import org.apache.sshd.client.session.forward.ExplicitPortForwardingTracker;
import org.apache.sshd.common.SshConstants;
import org.apache.sshd.common.channel.exception.SshChannelOpenException;
import org.apache.sshd.common.util.net.SshdSocketAddress;
import org.apache.sshd.sftp.client.SftpClient;
import org.apache.sshd.sftp.client.SftpClientFactory;
import org.apache.sshd.sftp.common.SftpConstants;
import org.apache.sshd.sftp.common.SftpException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.PublicKey;
import java.time.Duration;
import java.util.EnumSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A guest over authenticated MINA sessions: a command per exec channel, copies over SFTP, forwards through the first
 * session. A connection carries as many commands and copies at once as the guest's sshd allows (OpenSSH: MaxSessions,
 * 10 by default); when it refuses one more, the channel logs in again and uses a further connection. It owns its
 * {@link SshClient} (MINA's I/O threads): {@link #close()} stops it and waits for those threads, so nothing of it
 * outlives the channel.
 */
final class MinaSshChannel implements SshConnector.Session {
    private static final Logger log = LoggerFactory.getLogger(MinaSshChannel.class);
    /** What exec keeps of a stream in memory; callbacks and handles take any amount. */
    static final long COLLECT_LIMIT = 64L << 20;
    /** Budget for opening a channel and the wrapper's pid line, and for Kiln's own small commands (kill, signal). */
    static final Duration CALL_TIMEOUT = Duration.ofSeconds(30);
    /** Default limit on a whole {@link #copyIn}/{@link #copyOut}. */
    static final Duration COPY_TIMEOUT = Duration.ofMinutes(5);
    private static final Duration KILL_BUDGET = Duration.ofSeconds(10);
    /** How many connections one channel opens at most: with OpenSSH's default, 160 commands and copies at once. */
    static final int MAX_CONNECTIONS = 16;
    private static final Duration CLOSE_BUDGET = Duration.ofSeconds(10);
    private static final Set<ClientChannelEvent> CLOSED = EnumSet.of(ClientChannelEvent.CLOSED);

    private final SshClient client;
    private final Login login;
    private final ClientSession session; // the first: the channel's life, and its forwards
    private final List<ClientSession> sessions = new CopyOnWriteArrayList<>();
    private final String user;
    private final PublicKey hostKey;
    private final InetSocketAddress address;
    private final String name;
    private final Set<SshProcess> running = ConcurrentHashMap.newKeySet();
    private final AtomicBoolean closed = new AtomicBoolean(); // no new work; close() may still log in to kill
    private volatile boolean aborted;                          // no new connection either
    private final Object loginLock = new Object();

    /** Logs in once more, on the same client, to the same address: one attempt within the deadline. */
    interface Login {
        ClientSession open(Deadline deadline) throws IOException;
    }

    MinaSshChannel(SshClient client, Login login, ClientSession session, String machineId, String user, PublicKey hostKey,
                   InetSocketAddress address) {
        this.client = client;
        this.login = login;
        this.session = session;
        this.sessions.add(session);
        this.user = user;
        this.hostKey = hostKey;
        this.address = address;
        this.name = machineId + " (ssh " + user + "@" + address.getHostString() + ":" + address.getPort() + ")";
    }

    String name() { return name; }

    @Override
    public String user() { return user; }

    @Override
    public PublicKey hostKey() { return hostKey; }

    @Override
    public InetSocketAddress address() { return address; }

    /** Runs {@code true}: the session answers a command. */
    @Override
    public MinaSshChannel awaitReady(Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        try {
            Outcome o = run("true", deadline, " to run true");
            if (o.status() != null && o.status() == 0) return this;
            throw new WaitTimeoutException(name + " to run true", timeout, "it answered " + o);
        } catch (WaitTimeoutException e) {
            throw e;
        } catch (KilnException e) {
            throw new WaitTimeoutException(name + " to run true", timeout, e.getMessage(), e);
        }
    }

    /**
     * Runs the command and waits for it; one that outlives its timeout is killed with everything it started and
     * reported as a {@link WaitTimeoutException} with its output so far. Its stdin is the request's bytes, else empty.
     */
    @Override
    public ExecResult exec(ExecRequest req) {
        long start = System.nanoTime();
        Deadline deadline = Deadline.after(req.timeout());
        StreamSink out = req.onStdout() == null ? StreamSink.collect(COLLECT_LIMIT) : StreamSink.of(req.onStdout());
        StreamSink err = req.onStderr() == null ? StreamSink.collect(COLLECT_LIMIT) : StreamSink.of(req.onStderr());
        SshProcess p = track(SshProcess.start(this, req, out, err, false, deadline));
        try {
            if (!p.awaitDone(deadline)) throw timedOut(p, req, out, err);
            int status = p.status();
            for (StreamSink s : List.of(out, err)) {
                if (s.failure() != null) {
                    throw new GuestException("the " + (s == out ? "onStdout" : "onStderr") + " callback of " + req.argv()
                            + " threw " + s.failure() + "; the rest of that stream was dropped", null, s.failure());
                }
                if (s.dropped() > 0) {
                    throw new GuestException(req.argv() + " in " + name + " wrote more than " + (COLLECT_LIMIT >> 20)
                            + " MiB to " + (s == out ? "stdout" : "stderr")
                            + ": give the request a callback for it, or start() it and read its streams");
                }
            }
            return new ExecResult(req.argv(), status, p.signal(), out.bytes(), err.bytes(),
                    Duration.ofNanos(System.nanoTime() - start));
        } finally {
            p.release();
        }
    }

    private WaitTimeoutException timedOut(SshProcess p, ExecRequest req, StreamSink out, StreamSink err) {
        RuntimeException problem = null;
        try {
            p.kill();
        } catch (RuntimeException e) {
            problem = e;
        }
        boolean ended = p.awaitDone(Deadline.after(Duration.ofSeconds(5)));
        String seen = tail("stdout", out) + tail("stderr", err);
        WaitTimeoutException e = new WaitTimeoutException("command " + req.argv() + " (pid " + p.pid() + " in " + name
                + ") to finish; " + (ended ? "killed it" : "killed it, but something it started still holds its output open"),
                req.timeout(), seen);
        if (problem != null) e.addSuppressed(problem);
        return e;
    }

    private static String tail(String stream, StreamSink s) {
        String text = Text.tail(new String(s.bytes(), StandardCharsets.UTF_8), 1000).strip();
        return text.isEmpty() ? "" : stream + ":\n" + text + "\n";
    }

    /**
     * Starts the request and returns its handle once the guest reported its pid. Its stdin stays open until the
     * handle's is closed, unless the request gives its bytes.
     */
    @Override
    public GuestProcess start(ExecRequest req) {
        StreamSink out = req.onStdout() == null ? null : StreamSink.of(req.onStdout());
        StreamSink err = req.onStderr() == null ? null : StreamSink.of(req.onStderr());
        return track(SshProcess.start(this, req, out, err, true, Deadline.after(CALL_TIMEOUT)));
    }

    private SshProcess track(SshProcess p) {
        running.add(p);
        if (closed.get()) { // closed while it started: close() may have missed it
            p.close();
            throw closedError();
        }
        return p;
    }

    void forget(SshProcess p) {
        running.remove(p);
    }

    // ---- files

    @Override
    public void copyIn(Path hostFile, String guestPath) {
        copyIn(hostFile, guestPath, COPY_TIMEOUT);
    }

    /** Copies a host file into the guest (created or truncated) over SFTP within {@code timeout} for the whole copy. */
    public void copyIn(Path hostFile, String guestPath, Duration timeout) {
        String what = "copy " + hostFile + " into " + name + " as " + guestPath;
        try (InputStream in = Files.newInputStream(hostFile)) {
            sftp(what, timeout, sftp -> {
                try (OutputStream out = sftp.write(guestPath)) {
                    in.transferTo(out);
                }
            });
        } catch (IOException e) {
            throw new KilnException("cannot " + what + ": " + e, e);
        }
    }

    @Override
    public void copyOut(String guestPath, Path hostFile) {
        copyOut(guestPath, hostFile, COPY_TIMEOUT);
    }

    /**
     * Copies a guest file to the host over SFTP within {@code timeout} for the whole copy. The bytes land in a temporary
     * file beside {@code hostFile}, renamed over it only when the copy is complete.
     */
    public void copyOut(String guestPath, Path hostFile, Duration timeout) {
        String what = "copy " + guestPath + " out of " + name + " to " + hostFile;
        Path dir = hostFile.toAbsolutePath().getParent();
        Path part;
        try {
            part = Files.createTempFile(dir, "." + hostFile.getFileName(), ".part");
        } catch (IOException e) {
            throw new KilnException("cannot " + what + ": " + e, e);
        }
        try {
            sftp(what, timeout, sftp -> {
                try (InputStream in = sftp.read(guestPath)) {
                    Files.copy(in, part, StandardCopyOption.REPLACE_EXISTING);
                }
            });
            Files.move(part, hostFile, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException e) {
            throw new KilnException("cannot " + what + ": " + e, e);
        } finally {
            try {
                Files.deleteIfExists(part);
            } catch (IOException e) {
                log.debug("cannot delete {}", part, e);
            }
        }
    }

    private interface SftpWork {
        void run(SftpClient sftp) throws IOException;
    }

    /** Runs {@code work} on an SFTP channel of its own, closed when {@code timeout} passes (which fails the work). */
    @SuppressWarnings("try") // the watch closes the client early, from its own thread
    private void sftp(String what, Duration timeout, SftpWork work) {
        checkOpen();
        CountDownLatch done = new CountDownLatch(1);
        AtomicBoolean late = new AtomicBoolean();
        try (SftpClient sftp = onSomeSession(Deadline.after(CALL_TIMEOUT), what, SftpClientFactory.instance()::createSftpClient)) {
            Thread.ofVirtual().name("kiln-ssh-sftp-watch").start(() -> {
                try {
                    if (done.await(timeout.toNanos(), TimeUnit.NANOSECONDS)) return;
                } catch (InterruptedException e) {
                    return;
                }
                late.set(true);
                try {
                    sftp.close();
                } catch (IOException e) {
                    log.debug("closing a late SFTP channel of {}", name, e);
                }
            });
            try {
                work.run(sftp);
            } finally {
                done.countDown();
            }
        } catch (SftpException e) {
            throw new GuestException("cannot " + what + ": " + e.getMessage() + " ("
                    + SftpConstants.getStatusName(e.getStatus()) + ")", SftpConstants.getStatusName(e.getStatus()), e);
        } catch (IOException e) {
            if (late.get()) throw new WaitTimeoutException("the SFTP transfer to " + what, timeout, "", e);
            if (closed.get()) throw closedError();
            throw new GuestException("cannot " + what + ": " + e, null, e);
        }
    }

    /** Asks the guest to power off: {@code systemctl poweroff}, else {@code poweroff}; the session ending is success. */
    @Override
    public void shutdown() {
        Outcome o;
        try {
            o = run("systemctl poweroff 2>/dev/null || poweroff", Deadline.after(CALL_TIMEOUT), " to power off");
        } catch (GuestException | MachineClosedException e) {
            return; // the connection dropped as the guest went down
        }
        if (o.status() != null && o.status() != 0) {
            throw new GuestException(name + " refused to power off: exit " + o.status() + "\n" + o.output().strip());
        }
    }

    // ---- forwards

    @Override
    public Forward forwardLocal(int guestPort) {
        checkPort(guestPort);
        return forward(true, new SshdSocketAddress("127.0.0.1", 0), new SshdSocketAddress("127.0.0.1", guestPort),
                "forward 127.0.0.1:0 on the host to port " + guestPort + " of " + name);
    }

    /** {@inheritDoc} A {@code guestPort} of 0 lets the guest's sshd choose one; {@link Forward#listening()} says which. */
    @Override
    public Forward forwardRemote(int guestPort, InetSocketAddress hostTarget) {
        if (guestPort != 0) checkPort(guestPort);
        return forward(false, new SshdSocketAddress("127.0.0.1", guestPort),
                new SshdSocketAddress(hostTarget.getHostString(), hostTarget.getPort()),
                "forward port " + guestPort + " of " + name + " to " + hostTarget + " on the host");
    }

    private Forward forward(boolean local, SshdSocketAddress listen, SshdSocketAddress target, String what) {
        checkOpen();
        ExplicitPortForwardingTracker tracker;
        try {
            tracker = local ? session.createLocalPortForwardingTracker(listen, target)
                    : session.createRemotePortForwardingTracker(listen, target);
        } catch (IOException e) {
            throw new GuestException("cannot " + what + ": " + e.getMessage(), null, e);
        }
        SshdSocketAddress bound = tracker.getBoundAddress();
        InetSocketAddress listening = new InetSocketAddress(bound.getHostName(), bound.getPort());
        return new Forward() {
            @Override
            public InetSocketAddress listening() { return listening; }

            @Override
            public void close() {
                try {
                    tracker.close();
                } catch (IOException e) {
                    log.debug("closing {}", tracker, e);
                }
            }

            @Override
            public String toString() { return (local ? "local" : "remote") + " forward " + listening + " → " + target; }
        };
    }

    private static void checkPort(int port) {
        if (port < 1 || port > 65535) throw new IllegalArgumentException("not a port: " + port);
    }

    // ---- channels

    /** Opens an exec channel running {@code commandLine}, its streams left for the caller to read. */
    ChannelExec openExec(String commandLine, Deadline deadline) {
        checkOpen();
        try {
            return onSomeSession(deadline, "open an exec channel on " + name, s -> {
                ChannelExec channel = s.createExecChannel(commandLine);
                try {
                    if (!channel.open().verify(left(deadline)).isOpened()) throw new IOException("the channel did not open");
                } catch (IOException | RuntimeException e) {
                    channel.close(true);
                    throw e;
                }
                return channel;
            });
        } catch (IOException e) {
            if (closed.get() || !session.isOpen()) throw closedError();
            if (deadline.expired()) throw new WaitTimeoutException("an exec channel on " + name, deadline.total(), e.toString(), e);
            throw new GuestException("cannot open an exec channel on " + name + ": " + e.getMessage(), null, e);
        }
    }

    /** What one of Kiln's own commands did: its exit status (null if none came) and its stdout and stderr together. */
    record Outcome(Integer status, String output) {}

    /** Runs a small command of Kiln's, its output kept in memory, within the deadline. */
    Outcome run(String commandLine, Deadline deadline, String what) {
        if (!session.isOpen()) throw closedError(); // not the closed flag: close() kills commands with this
        ByteArrayOutputStream output = new ByteArrayOutputStream();
        try (ChannelExec channel = onSomeSession(deadline, "open a channel on " + name + what, s -> {
            ChannelExec c = s.createExecChannel(commandLine);
            c.setOut(output);
            c.setErr(output);
            try {
                c.open().verify(left(deadline));
            } catch (IOException | RuntimeException e) {
                c.close(true);
                throw e;
            }
            return c;
        })) {
            channel.getInvertedIn().close(); // no stdin (an InputStream given to MINA would get a pump thread)
            if (!channel.waitFor(CLOSED, left(deadline)).contains(ClientChannelEvent.CLOSED)) {
                throw new WaitTimeoutException("the guest shell of " + name + what, deadline.total(), output.toString(StandardCharsets.UTF_8));
            }
            return new Outcome(channel.getExitStatus(), output.toString(StandardCharsets.UTF_8));
        } catch (IOException e) {
            if (closed.get() || !session.isOpen()) throw closedError();
            throw new GuestException("cannot get the guest shell of " + name + what + ": " + e.getMessage(), null, e);
        }
    }

    /** {@link #run} within {@link #KILL_BUDGET}; its output does not matter. */
    void runQuietly(String commandLine, String what) {
        run(commandLine, Deadline.after(KILL_BUDGET), what);
    }

    /** Kills the processes and everything they started, with one command. */
    void killTrees(List<Long> pids, String what) {
        runQuietly(ShellCommand.script(ShellCommand.KILL_TREE, pids.stream().map(String::valueOf).toList()), " to kill " + what);
    }

    private interface OnSession<T> {
        T open(ClientSession session) throws IOException;
    }

    /**
     * Opens a channel with {@code open} on the first connection that takes one more, logging in again when none does.
     * {@code what} says what the channel is for, for the message when no connection takes it.
     */
    private <T> T onSomeSession(Deadline deadline, String what, OnSession<T> open) throws IOException {
        String refusal = "";
        for (int i = 0; ; i++) {
            ClientSession s = session(i, deadline, what, refusal);
            if (!s.isOpen()) continue; // a further connection that ended: another takes its place
            try {
                return open.open(s);
            } catch (IOException e) {
                String refused = refusal(e);
                if (refused == null) throw e;
                refusal = refused;
                log.debug("{}: connection {} takes no more channels: {}", name, i + 1, refused);
            }
        }
    }

    /**
     * The i-th connection; past the last, a new one, logged in outside any lock that {@link #abort()} needs (one login
     * at a time), so that an abort never waits for a login.
     */
    private ClientSession session(int i, Deadline deadline, String what, String refusal) throws IOException {
        if (i < sessions.size()) return sessions.get(i);
        synchronized (loginLock) {
            if (i < sessions.size()) return sessions.get(i);
            if (aborted) throw closedError();
            if (sessions.stream().filter(ClientSession::isOpen).count() >= MAX_CONNECTIONS) {
                throw new GuestException("cannot " + what + ": the guest's sshd took no more channels on each of "
                        + MAX_CONNECTIONS + " connections (it said '" + refusal + "'; OpenSSH allows MaxSessions commands"
                        + " and copies at once on one connection, 10 by default): close the process handles you are done with");
            }
            ClientSession s = login.open(deadline); // an abort meanwhile stops the client, which ends this
            synchronized (sessions) {
                if (aborted) {
                    s.close(true);
                    throw closedError();
                }
                sessions.removeIf(old -> old != session && !old.isOpen());
                sessions.add(s);
            }
            return s;
        }
    }

    /**
     * What sshd said when it refused a session channel, or null when it did not refuse one: OpenSSH refuses beyond
     * MaxSessions with "open failed" (connect failed); other servers say administratively prohibited or resource shortage.
     */
    private static String refusal(Throwable e) {
        for (Throwable c = e; c != null; c = c.getCause() == c ? null : c.getCause()) {
            if (c instanceof SshChannelOpenException o && (o.getReasonCode() == SshConstants.SSH_OPEN_CONNECT_FAILED
                    || o.getReasonCode() == SshConstants.SSH_OPEN_ADMINISTRATIVELY_PROHIBITED
                    || o.getReasonCode() == SshConstants.SSH_OPEN_RESOURCE_SHORTAGE)) {
                return o.getMessage();
            }
        }
        return null;
    }

    private void checkOpen() {
        if (closed.get() || !session.isOpen()) throw closedError();
    }

    private MachineClosedException closedError() {
        return new MachineClosedException("the SSH session to " + name + (closed.get() ? " is closed" : " ended"));
    }

    /**
     * Kills the commands still running, with one command (sshd leaves a command without a terminal running when its
     * connection ends), then ends the connections, stops the client and waits for its threads. Idempotent.
     */
    @Override
    public void close() {
        if (!closed.compareAndSet(false, true)) return;
        // Not only those alive: a command that exited may have left children holding its channel open.
        List<Long> pids = running.stream().filter(p -> p.pid() >= 0 && p.channelOpen()).map(SshProcess::pid).toList();
        if (!pids.isEmpty() && session.isOpen()) {
            try {
                killTrees(pids, "the commands still running, " + pids);
            } catch (KilnException e) {
                log.debug("killing {} on close of {}", pids, name, e);
            }
        }
        abort();
    }

    @Override
    public void abort() {
        closed.set(true);
        List<ClientSession> open;
        synchronized (sessions) { // after this no further connection is added: the flag is checked under this lock
            aborted = true;
            open = List.copyOf(sessions);
        }
        for (ClientSession s : open) s.close(true);
        MinaSshConnector.stop(client, Deadline.after(CLOSE_BUDGET)); // also ends a login under way
    }

    @Override
    public String toString() {
        return "SshChannel[" + name + (closed.get() ? ", closed" : "") + "]";
    }

    /** What is left of a deadline for MINA's waits, at least 1 ms: MINA waits without limit when given 0 or less. */
    static Duration left(Deadline deadline) {
        Duration d = deadline.remaining();
        return d.toMillis() >= 1 ? d : Duration.ofMillis(1);
    }
}
