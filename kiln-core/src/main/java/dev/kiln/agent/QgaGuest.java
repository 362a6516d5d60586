package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Guest;
import dev.kiln.GuestException;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;

import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
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
        return exec.exec(req);
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
