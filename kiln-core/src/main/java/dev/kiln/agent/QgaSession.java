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
import dev.kiln.agent.QgaChannel.Wake;
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

    /**
     * A sync on a connection that has never answered is resent after 1 ms, then after twice as long each
     * time, up to every 50 ms (connection attempts are retried on the same schedule): the agent may not have
     * opened its port yet, and QEMU drops what is written to a port nobody has open, so only a sync sent after
     * the agent opened it is answered. Starting at 1 ms catches an agent that is about to open its port; the
     * cap bounds the lag between the agent opening its port and readiness being seen to 50 ms (it was a fixed
     * 200 ms), for 20 small writes a second while the guest boots, which QEMU discards. {@link #nudge()}
     * resends at once when the VMM reports the port opened, so with QEMU the cap rarely matters.
     */
    static final Duration READY_RESEND_FIRST = Duration.ofMillis(1);
    static final Duration READY_RESEND_CAP = Duration.ofMillis(50);
    /**
     * A resync on a connection that has answered before (after a timed-out request or garbage) is resent every
     * 200 ms: the agent has its port open and drops nothing, so a resend only adds work for a slow agent.
     */
    private static final long RESYNC_RESEND_NANOS = TimeUnit.MILLISECONDS.toNanos(200);
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
    private boolean answered;              // the current connection answered a sync; guarded by lock
    private volatile String closedReason;
    private volatile long readyFirstNanos = READY_RESEND_FIRST.toNanos();
    private volatile long readyCapNanos = READY_RESEND_CAP.toNanos();

    /** Wakes awaitReady's pause between connection attempts (on nudge or close), and pauses on close. */
    private final ReentrantLock wakeLock = new ReentrantLock();
    private final Condition woken = wakeLock.newCondition();
    private long nudges; // guarded by wakeLock

    QgaSession(Supplier<SocketChannel> connector, Supplier<String> consoleTail, Supplier<String> vmmState, String name) {
        this.connector = Objects.requireNonNull(connector, "connector");
        this.consoleTail = consoleTail == null ? () -> "" : consoleTail;
        this.vmmState = vmmState == null ? () -> null : vmmState;
        this.name = Objects.requireNonNull(name, "name");
    }

    String name() { return name; }

    String consoleTail() { return consoleTail.get(); }

    /** What became of the VMM (e.g. "QEMU exited: killed by signal 9"), or null while it runs. */
    String vmmState() { return vmmState.get(); }

    /** Counts the connections made: what is learnt about the agent holds for one connection. */
    long connection() { return connection; }

    /** For tests: the resend schedule of a sync on a connection that has not answered yet. */
    void readyResend(Duration first, Duration cap) {
        readyFirstNanos = first.toNanos();
        readyCapNanos = Math.max(first.toNanos(), cap.toNanos());
    }

    // ---------------------------------------------------------------- readiness

    /**
     * Connects (retrying while the socket is missing or refuses) and syncs until the agent answers; reconnects
     * when the connection closed. Connection attempts back off like the sync resends; {@link #nudge()} cuts
     * either wait short.
     */
    void awaitReady(Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        long pauseNanos = readyFirstNanos;
        String last = null;
        RuntimeException lastError = null;
        while (true) {
            ensureNotClosed("before guest-sync-delimited");
            long nudgesBefore = nudgeCount();
            if (!tryLock(deadline)) {
                last = "another call held the connection all the time";
                break;
            }
            SyncAttempt attempt = new SyncAttempt();
            try {
                QgaChannel ch = channel;
                if (ch == null || ch.closed() != null) ch = connect();
                attempt.connected = true;
                sync(ch, deadline, "", attempt);
                return;
            } catch (MachineClosedException e) {
                throw e;
            } catch (RuntimeException e) {
                // no socket yet, refused, the connection closed under us, or the deadline passed while syncing
                last = attempt.describe(e);
                lastError = attempt.describesSilence(e) ? null : e; // its own message would say "stopped answering"
                log.debug("guest agent of {} not ready yet: {}", name, last);
            } finally {
                lock.unlock();
            }
            if (deadline.expired()) break;
            pauseUnlessNudged(Math.min(pauseNanos, deadline.remainingNanos()), nudgesBefore);
            pauseNanos = Math.min(pauseNanos * 2, readyCapNanos);
        }
        throw new WaitTimeoutException("the guest agent of " + name + " to answer guest-sync-delimited"
                + (last == null ? "" : "; last attempt: " + last), deadline.total(), consoleTail.get(), lastError);
    }

    /** What one readiness attempt got to, for the message when readiness times out. */
    private static final class SyncAttempt {
        boolean connected;
        int sent;
        int discarded;
        String lastDiscarded;

        boolean describesSilence(RuntimeException e) {
            return connected && sent > 0 && e instanceof WaitTimeoutException;
        }

        String describe(RuntimeException e) {
            if (!connected) return "cannot connect: " + e.getMessage();
            if (!describesSilence(e)) return e.getMessage();
            return "connected, sent guest-sync-delimited " + sent + (sent == 1 ? " time" : " times")
                    + (discarded == 0 ? ", no reply at all" : ", no reply with the latest id (" + discarded
                    + " other " + (discarded == 1 ? "reply" : "replies") + " discarded, the last: " + lastDiscarded + ")");
        }
    }

    /**
     * Wakes an {@link #awaitReady} in progress to resend its sync at once, or to retry connecting at once:
     * for when the VMM reports that the guest opened the agent's port. Does nothing otherwise.
     */
    void nudge() {
        QgaChannel ch = channel;
        if (ch != null) ch.wake();
        wakeLock.lock();
        try {
            nudges++;
            woken.signalAll();
        } finally {
            wakeLock.unlock();
        }
    }

    private long nudgeCount() {
        wakeLock.lock();
        try {
            return nudges;
        } finally {
            wakeLock.unlock();
        }
    }

    /** Waits {@code nanos}, or less when nudged since {@code nudgesBefore} or closed. */
    private void pauseUnlessNudged(long nanos, long nudgesBefore) {
        wakeLock.lock();
        try {
            long left = nanos;
            while (left > 0 && nudges == nudgesBefore && closedReason == null) left = woken.awaitNanos(left);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for the guest agent of " + name, null, e);
        } finally {
            wakeLock.unlock();
        }
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
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command + what, null);
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
                case Wake w -> throw new IllegalStateException("next() passes no wake-ups"); // cannot happen
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
            if (!inStep || ch.hasUnread()) sync(ch, deadline, command, null);
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
     * new id on the schedule described at {@link #READY_RESEND_FIRST} (or every 200 ms on a connection that
     * answered before), and at once when {@linkplain #nudge() nudged}. Only the latest id counts, so once it
     * arrives every earlier reply has been read and discarded.
     *
     * @param attempt counts what happened, for awaitReady's message; null for a resync before a request
     */
    private void sync(QgaChannel ch, Deadline deadline, String before, SyncAttempt attempt) {
        String what = before.isEmpty() ? "" : " before " + before;
        long first = answered ? RESYNC_RESEND_NANOS : readyFirstNanos;
        long cap = answered ? RESYNC_RESEND_NANOS : readyCapNanos;
        long interval = first;
        ch.discardUnread(); // stale wake-ups too: the sync goes out now anyway
        long id = sendSync(ch, deadline, attempt);
        long resendAt = System.nanoTime() + interval;
        while (true) {
            long left = deadline.remainingNanos();
            if (left == 0) throw timeout("guest-sync-delimited", what, deadline);
            Inbound in = nextOrWake(ch, Math.min(left, Math.max(0, resendAt - System.nanoTime())));
            if (in == null || in instanceof Wake) {
                if (in == null && deadline.expired()) throw timeout("guest-sync-delimited", what, deadline);
                // A wake-up means the agent just opened its port: start over from the shortest wait.
                interval = in == null ? Math.min(interval * 2, cap) : first;
                id = sendSync(ch, deadline, attempt);
                resendAt = System.nanoTime() + interval;
            } else if (in instanceof Closed c) {
                throw closedFailure(c, "while waiting for guest-sync-delimited" + what);
            } else if (in instanceof Reply(ObjectNode reply) && reply.path("return").isIntegralNumber()
                    && reply.get("return").asLong() == id) {
                inStep = true;
                answered = true;
                return;
            } else {
                log.debug("guest agent of {}: discarding {} while resynchronising", name, in);
                if (attempt != null) {
                    attempt.discarded++;
                    attempt.lastDiscarded = Text.tail(in.toString(), 200);
                }
                // The agent is answering: give the latest sync's answer the time it needs.
                resendAt = System.nanoTime() + interval;
            }
        }
    }

    private long sendSync(QgaChannel ch, Deadline deadline, SyncAttempt attempt) {
        long id = ThreadLocalRandom.current().nextLong(1, 1L << 53);
        byte[] body = message("guest-sync-delimited", JsonFramer.JSON.createObjectNode().put("id", id));
        byte[] bytes = new byte[body.length + 1];
        bytes[0] = (byte) 0xFF;
        System.arraycopy(body, 0, bytes, 1, body.length);
        send(ch, bytes, "guest-sync-delimited", "", deadline);
        if (attempt != null) attempt.sent++;
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

    /** The next reply (or garbage, or the end), passing over wake-ups, which only a sync heeds. */
    private Inbound next(QgaChannel ch, long nanos, String waitingFor) {
        try {
            return ch.next(nanos);
        } catch (InterruptedException e) {
            throw interrupted(waitingFor, e);
        }
    }

    private Inbound nextOrWake(QgaChannel ch, long nanos) {
        try {
            return ch.nextOrWake(nanos);
        } catch (InterruptedException e) {
            throw interrupted("guest-sync-delimited", e);
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
        answered = false;
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
