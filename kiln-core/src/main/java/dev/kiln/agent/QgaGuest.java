package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Guest;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.Text;
import dev.kiln.GuestException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;

import java.io.InputStream;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.function.Supplier;

/**
 * A client of qemu-guest-agent (the QGA protocol) over a byte stream: a virtio-serial port behind a QEMU
 * unix-socket chardev, a Firecracker vsock, or a host agent in tests. The connection and protocol are
 * {@link QgaSession}'s, commands {@link QgaExec}'s and file copies {@link QgaFiles}'.
 *
 * <p>Requests are serialised over one connection and brought back into step with
 * {@code guest-sync-delimited} whenever the stream may be out of step. Once {@linkplain #close(String) closed},
 * every call fails at once with {@link MachineClosedException} carrying the reason, including calls under
 * way; so does a call whose connection ends while {@code vmmState} reports the VMM gone. A connection that
 * ends under a live VMM is a {@link GuestException}.
 */
public final class QgaGuest implements Guest, AutoCloseable {
    /** Default wait for one raw request ({@link #ping()}, {@link #info()}). */
    public static final Duration DEFAULT_CALL_TIMEOUT = Duration.ofSeconds(30);
    /** Default limit on a whole {@link #copyIn}/{@link #copyOut}. */
    public static final Duration DEFAULT_COPY_TIMEOUT = Duration.ofMinutes(5);

    private final QgaSession session;
    private final QgaExec exec;
    private final QgaFiles files;
    private volatile PortExec ports;
    /** What exec keeps of a stream in memory; callbacks and handles take any amount. */
    private static final long COLLECT_LIMIT = 64L << 20;
    /** A handle's buffer per stream: a process that writes more than is read waits in the guest. */
    private static final int PIPE_BYTES = 256 << 10;

    /**
     * @param connector   opens a fresh connected channel to the agent (called again by {@link #awaitReady}
     *                    after failures); may throw
     * @param consoleTail the console's last output, for error messages; may be null
     * @param name        names the guest in messages and thread names
     */
    public QgaGuest(Supplier<SocketChannel> connector, Supplier<String> consoleTail, String name) {
        this(connector, consoleTail, null, name);
    }

    /**
     * @param vmmState says what became of the VMM (e.g. "QEMU exited: killed by signal 9"), or null while it
     *                 runs; when it is not null, a call whose connection closes fails with
     *                 {@link MachineClosedException} naming it, and it is added to timeouts. May be null.
     */
    public QgaGuest(Supplier<SocketChannel> connector, Supplier<String> consoleTail, Supplier<String> vmmState,
                    String name) {
        this.session = new QgaSession(connector, consoleTail, vmmState, name);
        this.exec = new QgaExec(session);
        this.files = new QgaFiles(session);
    }

    public String name() { return session.name(); }

    /**
     * Connects (retrying while the socket is missing or refuses) and sends {@code guest-sync-delimited} until
     * the agent answers: the agent may not be listening yet, and QEMU drops bytes written to a virtio-serial
     * port nobody has open. Resends back off from 1 ms to every 50 ms; {@link #nudge()} resends at once.
     * Reconnects when the connection closed. On timeout, the message says how the last attempt failed.
     */
    @Override
    public QgaGuest awaitReady(Duration timeout) {
        session.awaitReady(timeout);
        return this;
    }

    /**
     * Wakes an {@link #awaitReady} in progress to resend its sync (or reconnect) at once; call it when the VMM
     * reports that the guest opened the agent's port (QEMU's {@code VSERPORT_CHANGE}). Without one in
     * progress it does nothing.
     */
    public void nudge() {
        session.nudge();
    }

    /**
     * Sends one command and returns its {@code return} value; throws {@link GuestException} with the
     * agent's error class and description, or {@link WaitTimeoutException}.
     */
    public JsonNode call(String command, ObjectNode args, Duration timeout) {
        return session.request(command, args, Deadline.after(timeout), "");
    }

    /** {@code guest-ping}. */
    public void ping() {
        call("guest-ping", null, DEFAULT_CALL_TIMEOUT);
    }

    /** {@code guest-info}: the agent's version and its commands. */
    public JsonNode info() {
        return call("guest-info", null, DEFAULT_CALL_TIMEOUT);
    }

    /**
     * Runs the command and waits for it to exit; one that outlives its timeout is killed, with everything it
     * started, and reported as a {@link WaitTimeoutException}. The request's environment is added to the
     * agent's own.
     */
    @Override
    public ExecResult exec(ExecRequest req) {
        PortExec p = ports;
        if (p == null && !req.streams()) return exec.exec(req); // output at the end: the agent's own capture
        long start = System.nanoTime();
        Deadline deadline = Deadline.after(req.timeout());
        OutputSink.Collect out = req.onStdout() == null ? new OutputSink.Collect(COLLECT_LIMIT) : null;
        OutputSink.Collect err = req.onStderr() == null ? new OutputSink.Collect(COLLECT_LIMIT) : null;
        OutputSink outSink = out != null ? out : OutputSink.of(req.onStdout()), errSink = err != null ? err : OutputSink.of(req.onStderr());
        StreamingProcess proc = p == null ? null : p.start(req, false, false, outSink, errSink, deadline);
        if (proc == null) {
            if (!req.streams()) return exec.exec(req); // every slot is busy
            proc = new AgentProcess(session, exec, req, outSink, errSink);
        }
        Integer status = proc.awaitDone(deadline);
        if (status == null) {
            RuntimeException problem = null;
            try {
                proc.kill();
            } catch (RuntimeException e) {
                problem = e;
            }
            boolean ended = proc.awaitDone(Deadline.after(Duration.ofSeconds(5))) != null;
            if (!ended && proc instanceof PortProcess pp) p.retire(pp, "command " + req.argv() + " outlived its timeout and a kill");
            String seen = tail("stdout", out) + tail("stderr", err);
            String console = session.consoleTail();
            if (console != null && !console.isBlank()) seen += "console:\n" + console;
            WaitTimeoutException e = new WaitTimeoutException("command " + req.argv() + " (in " + name()
                    + ") to finish; " + (ended ? "killed it" : "killed it, but something it started still holds its output open"),
                    req.timeout(), seen);
            if (problem != null) e.addSuppressed(problem);
            throw e;
        }
        if (proc.wasNotFound()) throw proc.notFoundError();
        for (OutputSink sink : new OutputSink[] {outSink, errSink}) {
            if (sink instanceof OutputSink.Callback cb && cb.failure() != null) {
                throw new GuestException("the " + (sink == outSink ? "onStdout" : "onStderr") + " callback of " + req.argv()
                        + " threw " + cb.failure() + "; the rest of that stream was dropped", null, cb.failure());
            }
        }
        for (OutputSink.Collect c : new OutputSink.Collect[] {out, err}) {
            if (c != null && c.dropped() > 0) {
                throw new GuestException(req.argv() + " in " + name() + " wrote more than " + (COLLECT_LIMIT >> 20) + " MiB to "
                        + (c == out ? "stdout" : "stderr") + ": give the request a callback for it, or start() it and read its streams");
            }
        }
        // As a shell reports it: a status above 128 is taken for a signal's.
        int signal = status > 128 && status <= 128 + 64 ? status - 128 : 0;
        return new ExecResult(req.argv(), status, signal, out != null ? out.bytes() : new byte[0],
                err != null ? err.bytes() : new byte[0], Duration.ofNanos(System.nanoTime() - start));
    }

    private static String tail(String stream, OutputSink.Collect c) {
        if (c == null) return "";
        String text = Text.tail(new String(c.bytes(), StandardCharsets.UTF_8), 1000).strip();
        return text.isEmpty() ? "" : stream + ":\n" + text + "\n";
    }

    /**
     * Starts the request and returns its handle at once. Over exec ports its output streams as it comes and its
     * stdin is open (unless the request gives its bytes); without them (no ports, or all busy) it runs through the agent
     * alone: its output is read from files as it grows, a poll late, and its stdin is the request's bytes.
     */
    @Override
    public GuestProcess start(ExecRequest req) {
        String what = " of " + req.argv() + " in " + name();
        OutputSink out = req.onStdout() == null ? new OutputSink.Pipe(PIPE_BYTES, "the stdout" + what) : OutputSink.of(req.onStdout());
        OutputSink err = req.onStderr() == null ? new OutputSink.Pipe(PIPE_BYTES, "the stderr" + what) : OutputSink.of(req.onStderr());
        PortExec p = ports;
        PortProcess proc = p == null ? null
                : p.start(req, true, req.stdin() == null, out, err, Deadline.after(DEFAULT_CALL_TIMEOUT));
        if (proc == null) return new AgentProcess(session, exec, req, out, err);
        proc.streams(out instanceof InputStream in ? in : InputStream.nullInputStream(),
                err instanceof InputStream in ? in : InputStream.nullInputStream());
        return proc;
    }

    /**
     * Lets commands run over the VMM's exec ports: streamed output, stdin, one fork and exec in the guest each.
     * Called by the driver once the machine is up; without it, commands go through the agent alone.
     */
    public void execPorts(ExecPorts execPorts) {
        this.ports = new PortExec(session, exec, execPorts);
    }

    /**
     * Gets a guest shell of the exec ports running (if there are ports), so that a guest saved now has one ready, and
     * returns the slots whose shells run, idle, for {@link #adoptExecShells} on a restore of it.
     */
    public List<Integer> readyExecShells(Duration timeout) {
        PortExec p = ports;
        if (p == null) return List.of();
        p.warmShell(Deadline.after(timeout));
        return p.idleShells();
    }

    /** A restored guest's exec shells, as {@link #readyExecShells} listed them when it was saved, are taken over. */
    public void adoptExecShells(List<Integer> slots) {
        PortExec p = ports;
        if (p != null) p.adoptShells(slots);
    }

    /** How many exec slots run a process now (0 without exec ports). */
    public int busyExecSlots() {
        PortExec p = ports;
        return p == null ? 0 : p.busySlots();
    }

    @Override
    public void copyIn(Path hostFile, String guestPath) {
        copyIn(hostFile, guestPath, DEFAULT_COPY_TIMEOUT);
    }

    /** Copies a host file into the guest (created or truncated) within {@code timeout} for the whole copy. */
    public void copyIn(Path hostFile, String guestPath, Duration timeout) {
        files.copyIn(hostFile, guestPath, timeout);
    }

    @Override
    public void copyOut(String guestPath, Path hostFile) {
        copyOut(guestPath, hostFile, DEFAULT_COPY_TIMEOUT);
    }

    /**
     * Copies a guest file to the host within {@code timeout} for the whole copy. The bytes land in a
     * temporary file beside {@code hostFile}, renamed over it only when the copy is complete.
     */
    public void copyOut(String guestPath, Path hostFile, Duration timeout) {
        files.copyOut(guestPath, hostFile, timeout);
    }

    /**
     * Sends {@code guest-shutdown} (powerdown). The agent answers only failures, so success is silence or
     * the connection closing within a short moment; an error reply is a {@link GuestException}.
     */
    @Override
    public void shutdown() {
        session.shutdown(Deadline.after(DEFAULT_CALL_TIMEOUT));
    }

    /** {@link #close(String)} without a reason to give. */
    @Override
    public void close() {
        close(QgaSession.NO_REASON);
    }

    /**
     * Closes the connection and stops its reader. Calls under way and later ones fail at once with
     * {@link MachineClosedException} whose message carries {@code reason} (e.g. "machine vm-1 closed"), and the
     * VMM's state when it is gone. Idempotent: the first reason stays.
     */
    public void close(String reason) {
        PortExec p = ports;
        if (p != null) p.close(reason);
        session.close(reason);
    }

    /** For tests: the resend schedule of readiness syncs. */
    QgaGuest readyResend(Duration first, Duration cap) {
        session.readyResend(first, cap);
        return this;
    }

    @Override
    public String toString() {
        return "QgaGuest[" + name() + ", " + session + "]";
    }
}
