package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.Text;
import dev.kiln.WaitTimeoutException;
import dev.kiln.agent.QgaChannel.Closed;
import dev.kiln.agent.QgaChannel.Garbage;
import dev.kiln.agent.QgaChannel.Inbound;
import dev.kiln.agent.QgaChannel.Reply;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;

/**
 * The connection to a guest agent and the QGA protocol over it: connecting, bringing the stream into step,
 * one request and its reply at a time, and errors that say what went wrong. {@link QgaExec} and
 * {@link QgaFiles} build on its {@link #request}.
 *
 * <p>The agent answers one request at a time and its replies carry no ids, so requests are serialised
 * and, whenever the stream may be out of step (a new connection, a timed-out request, garbage), the next
 * request is preceded by {@code guest-sync-delimited} with a fresh random id, discarding every reply up to
 * the one carrying it.
 *
 * <p>Once closed ({@link #close}), every call, including those under way, fails with
 * {@link MachineClosedException}; so does a call whose connection ends while the VMM is reported gone.
 */
final class QgaSession {
    private static final Logger log = LoggerFactory.getLogger(QgaSession.class);

    private static final Duration SYNC_RESEND = Duration.ofMillis(200);
    private static final Duration WRITE_FLOOR = Duration.ofSeconds(10);
    private static final Duration SHUTDOWN_REPLY_WAIT = Duration.ofMillis(500);
    static final String NO_REASON = "no reason given";

    private final Supplier<SocketChannel> connector;
    private final Supplier<String> consoleTail;
    private final Supplier<String> vmmState;
    private final String name;
    private final ReentrantLock lock = new ReentrantLock();

    private volatile QgaChannel channel;   // written under lock
    private volatile long connection;      // counts connections made; written under lock
    private boolean inStep;                // guarded by lock
    private volatile String closedReason;

    /** Cuts pauses between requests short when the session is closed. */
    private final ReentrantLock wakeLock = new ReentrantLock();
    private final Condition woken = wakeLock.newCondition();

    QgaSession(Supplier<SocketChannel> connector, Supplier<String> consoleTail, Supplier<String> vmmState, String name) {
        this.connector = Objects.requireNonNull(connector, "connector");
        this.consoleTail = consoleTail == null ? () -> "" : consoleTail;
        this.vmmState = vmmState == null ? () -> null : vmmState;
        this.name = Objects.requireNonNull(name, "name");
    }

    String name() { return name; }

    String consoleTail() { return consoleTail.get(); }

    /** Counts the connections made: what is learnt about the agent holds for one connection. */
    long connection() { return connection; }

    // ---------------------------------------------------------------- readiness

    /**
     * Connects (retrying while the socket is missing or refuses) and syncs until the agent answers; reconnects
     * when the connection closed.
     */
    void awaitReady(Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        RuntimeException last = null;
        while (!deadline.expired()) {
            ensureNotClosed("before guest-sync-delimited");
            if (!tryLock(deadline)) break;
            try {
                QgaChannel ch = channel;
                if (ch == null || ch.closed() != null) ch = connect();
                sync(ch, deadline, "");
                return;
            } catch (MachineClosedException e) {
                throw e;
            } catch (WaitTimeoutException e) {
                break;
            } catch (RuntimeException e) {
                last = e; // no socket yet, refused, or the connection closed under us: try again
                log.debug("guest agent of {} not ready yet: {}", name, e.toString());
            } finally {
                lock.unlock();
            }
            pause(Math.min(TimeUnit.MILLISECONDS.toNanos(50), deadline.remainingNanos()));
        }
        throw new WaitTimeoutException("guest agent to answer guest-sync", timeout, consoleTail.get(), last);
    }

    /** Waits {@code nanos} between requests, or less when the session is closed (the next request says so). */
    void pause(long nanos) {
        wakeLock.lock();
        try {
            long left = nanos;
            while (left > 0 && closedReason == null) left = woken.awaitNanos(left);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest agent of " + name, null, e);
        } finally {
            wakeLock.unlock();
        }
    }

    // ---------------------------------------------------------------- requests

    /**
     * Sends one command and returns its {@code return} value; throws {@link AgentError} with the agent's
     * error class and description, {@link WaitTimeoutException}, {@link MachineClosedException} (closed, or
     * the VMM is gone) or {@link GuestException}. {@code what} adds to the command's name in messages.
     */
    JsonNode request(String command, ObjectNode args, Deadline deadline, String what) {
        if (!tryLock(deadline)) throw busy(command, what, deadline);
        try {
            QgaChannel ch = usableChannel(command + what);
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command + what);
            send(ch, message(command, args), command, what, deadline);
            Inbound in = next(ch, deadline.remainingNanos(), command + what);
            return switch (in) {
                case null -> {
                    inStep = false; // its reply will come later
                    throw timeout(command, what, deadline);
                }
                case Reply(ObjectNode reply) when reply.has("return") -> reply.get("return");
                case Reply(ObjectNode reply) when reply.has("error") -> throw agentError(command, what, reply.get("error"));
                case Reply(ObjectNode reply) -> {
                    inStep = false;
                    throw new GuestException("guest agent of " + name + " answered " + command + what
                            + " with neither return nor error: " + Text.tail(reply.toString(), 500));
                }
                case Garbage(var problem) -> {
                    inStep = false;
                    throw new GuestException("guest agent of " + name + " sent garbage in answer to " + command + what
                            + ": " + Text.tail(problem.getMessage(), 300)
                            + (problem.getCause() != null ? " (" + problem.getCause().getMessage() + ")" : ""), null, problem);
                }
                case Closed c -> throw closedFailure(c, "while waiting for " + command + what);
            };
        } finally {
            lock.unlock();
        }
    }

    /**
     * Sends {@code guest-shutdown} (powerdown). The agent answers only failures, so success is silence or
     * the connection closing within a short moment; an error reply is a {@link GuestException}.
     */
    void shutdown(Deadline deadline) {
        String command = "guest-shutdown";
        if (!tryLock(deadline)) throw busy(command, "", deadline);
        try {
            QgaChannel ch = usableChannel(command);
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command);
            ObjectNode args = JsonFramer.JSON.createObjectNode().put("mode", "powerdown");
            send(ch, message(command, args), command, "", deadline);
            inStep = false; // a late error reply may still come; resync before anything else
            Deadline brief = Deadline.after(SHUTDOWN_REPLY_WAIT);
            Inbound in = next(ch, brief.remainingNanos(), command);
            if (in instanceof Reply(ObjectNode reply) && reply.has("error")) {
                throw agentError(command, "", reply.get("error"));
            }
            log.debug("guest agent of {} accepted guest-shutdown ({})", name, in == null ? "no reply" : in);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Closes the connection and stops its reader; calls under way and later fail at once with
     * {@link MachineClosedException} carrying {@code reason}. The first reason stays.
     */
    void close(String reason) {
        Objects.requireNonNull(reason, "reason");
        synchronized (this) {
            if (closedReason == null) closedReason = reason;
        }
        // After closedReason is set: a connect() racing with this either is seen here or sees closedReason.
        QgaChannel ch = channel;
        if (ch != null) ch.close("the client was closed: " + closedReason);
        wakeLock.lock();
        try {
            woken.signalAll();
        } finally {
            wakeLock.unlock();
        }
    }

    /** Why the session was closed, or null while it is open. */
    String closedReason() { return closedReason; }

    @Override
    public String toString() {
        QgaChannel ch = channel;
        String reason = closedReason;
        return reason != null ? "closed (" + reason + ")" : ch == null ? "not connected"
                : ch.closed() != null ? "connection closed: " + ch.closed().reason() : "connected";
    }

    // ---------------------------------------------------------------- the protocol

    /**
     * Brings the stream into step: 0xFF (the agent's parser drops whatever partial input it holds and
     * answers the stray byte with an error) and {@code guest-sync-delimited} with a fresh id, resent with a
     * new id after each 200 ms of silence. Only the latest id counts, so once it arrives every earlier
     * reply has been read and discarded.
     */
    private void sync(QgaChannel ch, Deadline deadline, String before) {
        String what = before.isEmpty() ? "" : " before " + before;
        ch.discardUnread();
        long id = sendSync(ch, deadline);
        long resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
        while (true) {
            long left = deadline.remainingNanos();
            if (left == 0) throw timeout("guest-sync-delimited", what, deadline);
            Inbound in = next(ch, Math.min(left, Math.max(0, resendAt - System.nanoTime())), "guest-sync-delimited");
            if (in == null) {
                if (deadline.expired()) throw timeout("guest-sync-delimited", what, deadline);
                id = sendSync(ch, deadline);
                resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
            } else if (in instanceof Closed c) {
                throw closedFailure(c, "while waiting for guest-sync-delimited" + what);
            } else if (in instanceof Reply(ObjectNode reply) && reply.path("return").isIntegralNumber()
                    && reply.get("return").asLong() == id) {
                inStep = true;
                return;
            } else {
                log.debug("guest agent of {}: discarding {} while resynchronising", name, in);
                resendAt = System.nanoTime() + SYNC_RESEND.toNanos();
            }
        }
    }

    private long sendSync(QgaChannel ch, Deadline deadline) {
        long id = ThreadLocalRandom.current().nextLong(1, 1L << 53);
        byte[] body = message("guest-sync-delimited", JsonFramer.JSON.createObjectNode().put("id", id));
        byte[] bytes = new byte[body.length + 1];
        bytes[0] = (byte) 0xFF;
        System.arraycopy(body, 0, bytes, 1, body.length);
        send(ch, bytes, "guest-sync-delimited", "", deadline);
        return id;
    }

    private void send(QgaChannel ch, byte[] bytes, String command, String what, Deadline deadline) {
        Duration limit = deadline.remaining().compareTo(WRITE_FLOOR) > 0 ? deadline.remaining() : WRITE_FLOOR;
        try {
            ch.send(bytes, limit);
        } catch (IOException e) {
            Closed c = ch.closed();
            if (c != null && c.writeTimedOut() && closedReason == null) {
                throw new WaitTimeoutException("guest agent of " + name + " to take " + command
                        + what + " (" + c.reason() + ")", limit, consoleTail.get(), e);
            }
            throw closedFailure(c != null ? c : new Closed(e.getMessage(), e, false), "while sending " + command + what);
        }
    }

    /** The next reply (or garbage, or the end). */
    private Inbound next(QgaChannel ch, long nanos, String waitingFor) {
        try {
            return ch.next(nanos);
        } catch (InterruptedException e) {
            throw interrupted(waitingFor, e);
        }
    }

    private GuestException interrupted(String waitingFor, InterruptedException e) {
        Thread.currentThread().interrupt();
        inStep = false;
        return new GuestException("interrupted while waiting for the guest agent of " + name + " to answer " + waitingFor,
                null, e);
    }

    private static byte[] message(String command, ObjectNode args) {
        ObjectNode msg = JsonFramer.JSON.createObjectNode().put("execute", command);
        if (args != null) msg.set("arguments", args);
        return JsonFramer.toBytes(msg);
    }

    /** The open channel, connecting once if there is none yet; a closed one fails at once. */
    private QgaChannel usableChannel(String forWhat) {
        ensureNotClosed("before " + forWhat);
        QgaChannel ch = channel;
        if (ch == null) {
            try {
                ch = connect();
            } catch (MachineClosedException e) {
                throw e;
            } catch (RuntimeException e) {
                throw new GuestException("cannot connect to the guest agent of " + name + " for " + forWhat + ": " + e,
                        null, e);
            }
        }
        Closed c = ch.closed();
        if (c != null) throw closedFailure(c, "before " + forWhat);
        return ch;
    }

    /** Under lock. */
    private QgaChannel connect() {
        QgaChannel old = channel;
        if (old != null) old.close("replaced by a new connection");
        SocketChannel sc = Objects.requireNonNull(connector.get(), "the connector returned no channel");
        QgaChannel ch;
        try {
            ch = new QgaChannel(sc, name);
        } catch (IOException e) {
            try {
                sc.close();
            } catch (IOException ignored) {
                // already failing
            }
            throw new GuestException("cannot set up the connection to the guest agent of " + name + ": " + e, null, e);
        }
        channel = ch;
        connection++;
        inStep = false;
        if (closedReason != null) { // close() ran meanwhile and may not have seen this channel
            ch.close("the client was closed: " + closedReason);
            throw closedFailure(null, "while connecting");
        }
        return ch;
    }

    private void ensureNotClosed(String doing) {
        if (closedReason != null) throw closedFailure(null, doing);
    }

    private boolean tryLock(Deadline deadline) {
        try {
            return lock.tryLock(deadline.remainingNanos(), TimeUnit.NANOSECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest agent of " + name, null, e);
        }
    }

    /**
     * The failure of a call that found the session closed or its connection ended ({@code c}, null when it
     * never got that far). The cause comes first, whichever was noticed first: the VMM being gone (its state),
     * then the session being closed (its reason); both are {@link MachineClosedException}. A connection that
     * ended under a live VMM is a {@link GuestException}.
     */
    KilnException closedFailure(Closed c, String doing) {
        String vmm = vmmState.get();
        String reason = closedReason;
        String tail = consoleTail.get();
        String console = tail == null || tail.isBlank() ? ""
                : "\n  console tail:\n    " + Text.tail(tail, 2000).strip().replace("\n", "\n    ");
        Throwable cause = c == null ? null : c.cause();
        if (vmm != null) {
            String how = reason != null ? "the client was closed (" + reason + ")"
                    : "the connection closed (" + c.reason() + ")";
            return new MachineClosedException("guest agent of " + name + " unreachable " + doing + ": " + vmm
                    + "; " + how + console, cause);
        }
        if (reason != null) {
            return new MachineClosedException("the guest agent client of " + name + " was closed (" + reason + ") "
                    + doing, cause);
        }
        return new GuestException("the guest agent connection of " + name + " closed (" + c.reason() + ") " + doing
                + console, null, cause);
    }

    /** Nothing was sent: another call held the connection for the whole time. */
    private WaitTimeoutException busy(String command, String what, Deadline deadline) {
        return new WaitTimeoutException("the connection to the guest agent of " + name + " for " + command + what
                + " (another call held it all that time)", deadline.total(), consoleTail.get());
    }

    /** No reply at all to a request: the agent went silent (exited, wedged) or the whole guest is stuck. */
    private WaitTimeoutException timeout(String command, String what, Deadline deadline) {
        String vmm = vmmState.get();
        return new WaitTimeoutException("guest agent of " + name + " to answer " + command + what
                + "; it stopped answering (no reply at all): the agent may have exited or the guest may be hung"
                + (vmm == null ? "" : "; " + vmm), deadline.total(), consoleTail.get());
    }

    private GuestException agentError(String command, String what, JsonNode error) {
        String errorClass = error.path("class").asText("GenericError");
        String desc = error.path("desc").asText(error.toString());
        return new AgentError("guest agent of " + name + ": " + command + what + " failed: " + desc + " (" + errorClass
                + ")", errorClass, desc);
    }

    /** The agent answered with an error (rather than the connection failing). */
    static final class AgentError extends GuestException {
        final String desc;

        AgentError(String message, String errorClass, String desc) {
            super(message, errorClass, null);
            this.desc = desc;
        }
    }
}
