package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.KilnException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import dev.kiln.support.ProtocolException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedSelectorException;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The stream under a {@link Qmp}: writes commands, reads what QEMU sends, routes each reply to its command and
 * hands events on. Holds the run state.
 *
 * <p>Who reads: a thread waiting for its reply reads the socket itself ("leader/follower"): it wakes once,
 * when the reply arrives, instead of waiting for a reader thread to wake it (a second wake-up, which doubled
 * the round trip). One caller leads at a time; others wait for their reply or for the lead. While no command
 * is in flight, a virtual thread reads events and notices the end of the connection; it stands aside while
 * callers read (it holds no platform thread: it waits in a selector, which parks virtual threads).
 */
final class QmpConnection {
    /** How often the idle reader looks whether callers are done reading, when nobody tells it. */
    private static final long IDLE_RECHECK_NANOS = TimeUnit.MILLISECONDS.toNanos(10);

    private final String name;
    private final SocketChannel channel;
    private final QmpTranscript transcript;
    /** Gets every event message, on whichever thread read it. */
    private final Consumer<ObjectNode> events;
    /** Told once, when the connection closes. */
    private final Consumer<QmpClosure> closeListener;
    private final AtomicLong ids = new AtomicLong();
    /** Commands sent and not answered yet, in the order sent (guarded by itself; appended under the send lock). */
    private final ArrayDeque<InFlight> inFlight = new ArrayDeque<>();
    private final CompletableFuture<ObjectNode> greeting = new CompletableFuture<>();
    private final CompletableFuture<Void> closedFuture = new CompletableFuture<>();
    private final Object stateLock = new Object();
    private volatile Qmp.State state = Qmp.State.CONNECTING;
    private volatile QmpClosure closure; // set before state becomes CLOSED
    private volatile Thread idleReader;

    // Reading. The framer and the read buffer belong to whoever holds readMutex (held only while draining what
    // the socket has, never while waiting). A caller waiting for its reply waits in callerSelector, and only
    // the one that leads (readLead) does. The idle reader waits in idleSelector while no caller is waiting.
    private final ReentrantLock readMutex = new ReentrantLock();
    private final JsonFramer framer = new JsonFramer(this::dispatch);
    private final ByteBuffer readBuf = ByteBuffer.allocate(65536);
    private final Selector callerSelector;
    private final Selector idleSelector;
    private final ReentrantLock leadLock = new ReentrantLock();
    private final Condition leadChanged = leadLock.newCondition(); // lead freed, a reply delivered, callers gone
    private int callers;            // guarded by leadLock: threads in call() waiting for a reply
    private boolean readLead;       // guarded by leadLock: a caller waits in callerSelector
    private int followers;          // guarded by leadLock: callers waiting for the lead or their reply
    private boolean idleWaiting;    // guarded by leadLock: the idle reader waits for the callers to finish

    /** A command sent: its id (null when sent without) and its reply. */
    private record InFlight(String id, CompletableFuture<ObjectNode> reply) {}

    /** Takes the channel over (non-blocking from now on); on failure the caller still owns it. */
    QmpConnection(String name, SocketChannel channel, QmpTranscript transcript, Consumer<ObjectNode> events,
                  Consumer<QmpClosure> closeListener) throws IOException {
        this.name = name;
        this.channel = channel;
        this.transcript = transcript;
        this.events = events;
        this.closeListener = closeListener;
        Selector caller = null;
        try {
            channel.configureBlocking(false);
            caller = Selector.open();
            channel.register(caller, SelectionKey.OP_READ);
            this.callerSelector = caller;
            this.idleSelector = Selector.open();
            channel.register(idleSelector, SelectionKey.OP_READ);
        } catch (IOException | RuntimeException e) {
            if (caller != null) caller.close();
            throw e;
        }
    }

    /**
     * Awaits the greeting, negotiates capabilities and starts the idle reader: CONNECTING → RUNNING. Closes the
     * connection on failure.
     */
    void handshake(Duration timeout) {
        try {
            // This thread reads the greeting and the capabilities' reply itself (no hand-off between threads
            // while launching); the idle reader starts once the connection is up.
            awaitReply(greeting, Deadline.after(timeout));
            greeting.get();
            JsonNode caps = call("qmp_capabilities", null, timeout, true).get("error");
            if (caps != null) throw new QmpException("qmp_capabilities", caps.path("class").asText("?"), caps.path("desc").asText(""), null);
            synchronized (stateLock) {
                if (state == Qmp.State.CLOSED) throw new KilnException("QMP connection closed: " + closure.reason());
                state = Qmp.State.RUNNING;
            }
            idleReader = Thread.ofVirtual().name("kiln-qmp-" + name).unstarted(this::idleReadLoop);
            idleReader.start();
        } catch (TimeoutException e) {
            close(QmpClosure.lost("no QMP greeting within " + timeout));
            throw new WaitTimeoutException("the QMP greeting from " + name, timeout, String.join("\n", transcript.lines()));
        } catch (ExecutionException e) {
            close(QmpClosure.lost("handshake failed"));
            throw new KilnException("QMP handshake with " + name + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            close(QmpClosure.lost("interrupted"));
            throw new KilnException("interrupted during the QMP handshake", e);
        } catch (RuntimeException e) {
            close(QmpClosure.lost("handshake failed"));
            throw e;
        }
    }

    Qmp.State state() { return state; }

    /** Why it closed, or null while open. */
    QmpClosure closure() { return closure; }

    CompletableFuture<Void> onClose() { return closedFuture; }

    ObjectNode greeting() { return greeting.getNow(null); }

    /**
     * Commands go without an "id": QEMU reads its monitor a byte per main-loop turn, so every byte of a
     * command costs it some microseconds (an id of a few characters made the round trip ~25 % slower), and
     * without out-of-band execution (never negotiated here) QEMU answers commands one after the other in the
     * order sent (QMP specification, "Out-of-band execution"). Replies therefore go to the oldest command in
     * flight; one that carries an id must carry that command's. The handshake carries an id, once.
     */
    ObjectNode call(String command, ObjectNode arguments, Duration timeout, boolean withId) {
        QmpClosure closedBefore = closure;
        if (closedBefore != null) throw closedBefore.commandFailed(name, command, null);
        Deadline deadline = Deadline.after(timeout);
        ObjectNode msg = JsonNodeFactory.instance.objectNode();
        msg.put("execute", command);
        if (arguments != null && !arguments.isEmpty()) msg.set("arguments", arguments);
        String id = null;
        if (withId) msg.put("id", id = Long.toString(ids.incrementAndGet()));
        CompletableFuture<ObjectNode> reply = new CompletableFuture<>();
        callerArrives();
        try {
            send(msg, new InFlight(id, reply), deadline);
            awaitReply(reply, deadline);
            return reply.get();
        } catch (TimeoutException e) {
            throw new QmpException(command, "no reply within " + timeout, e);
        } catch (ExecutionException e) {
            // only a close fails a reply
            QmpClosure why = closure;
            if (why != null) throw why.commandFailed(name, command, e.getCause());
            throw new QmpException(command, e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new QmpException(command, "interrupted", e);
        } catch (IOException e) {
            QmpClosure why = closure;
            if (why != null) throw why.commandFailed(name, command, e); // closed under the write
            close(QmpClosure.lost("write failed: " + e.getMessage()));
            throw new QmpException(command, "cannot write to QMP: " + e.getMessage(), e);
        } finally {
            // A command that timed out stays in flight: its late reply must not be taken for the next one's.
            callerLeaves();
        }
    }

    /** Queues the command as in flight and writes it, both under the send lock: the queue is in sending order. */
    private void send(ObjectNode msg, InFlight entry, Deadline deadline) throws IOException, TimeoutException {
        byte[] bytes = JsonFramer.toBytes(msg);
        transcript.sent(msg);
        ByteBuffer buf = ByteBuffer.wrap(bytes);
        synchronized (channel) {
            if (state == Qmp.State.CLOSED) throw new IOException("QMP connection closed (" + closure.reason() + ")");
            synchronized (inFlight) {
                inFlight.addLast(entry);
            }
            while (buf.hasRemaining()) {
                if (channel.write(buf) == 0) {
                    // QEMU is not reading: the socket's buffer is full (non-blocking channel). Rare; back off.
                    if (deadline.expired()) {
                        // part of a command is on the wire: the stream cannot be used any more
                        close(QmpClosure.lost("QEMU did not read a command within its timeout"));
                        throw new TimeoutException("QEMU did not read the command");
                    }
                    if (state == Qmp.State.CLOSED) throw new IOException("QMP connection closed (" + closure.reason() + ")");
                    LockSupport.parkNanos(TimeUnit.MICROSECONDS.toNanos(200));
                }
            }
        }
    }

    private void callerArrives() {
        leadLock.lock();
        try {
            callers++;
        } finally {
            leadLock.unlock();
        }
    }

    private void callerLeaves() {
        leadLock.lock();
        try {
            callers--; // the idle reader looks again by itself (IDLE_RECHECK): waking it per command cost CPU
        } finally {
            leadLock.unlock();
        }
    }

    /** Has the idle reader look at the socket now rather than at its next recheck. */
    void wakeIdleReader() {
        leadLock.lock();
        try {
            if (idleWaiting) leadChanged.signalAll();
        } finally {
            leadLock.unlock();
        }
    }

    /**
     * Waits until {@code reply} is complete, reading the socket on this thread when no other caller does.
     * Throws TimeoutException at the deadline; InterruptedException when interrupted (before a read: an
     * interrupted thread's read would close the channel).
     */
    private void awaitReply(CompletableFuture<ObjectNode> reply, Deadline deadline) throws TimeoutException, InterruptedException {
        while (!reply.isDone()) {
            if (!takeLead(reply, deadline)) continue; // our reply came in while we waited, or try again
            try {
                while (!reply.isDone()) {
                    if (state == Qmp.State.CLOSED) {
                        // closed after this command was queued: nobody else will fail it
                        reply.completeExceptionally(new KilnException("QMP connection closed: " + closure.reason()));
                        return;
                    }
                    if (Thread.interrupted()) throw new InterruptedException();
                    drain();
                    if (reply.isDone()) break;
                    long left = deadline.remainingNanos();
                    if (left <= 0) throw new TimeoutException();
                    try {
                        // wakes when QEMU writes, at the deadline, on interrupt, or when the connection closes
                        callerSelector.select(Math.max(1, TimeUnit.NANOSECONDS.toMillis(left + 999_999)));
                        callerSelector.selectedKeys().clear();
                    } catch (ClosedSelectorException e) {
                        continue; // closed: the loop fails the reply
                    } catch (IOException e) {
                        close(QmpClosure.lost("QMP wait failed: " + e.getMessage()));
                    }
                }
            } finally {
                releaseLead();
            }
        }
    }

    /** Becomes the reading caller; false if the reply completed meanwhile. Fails at the deadline. */
    private boolean takeLead(CompletableFuture<ObjectNode> reply, Deadline deadline) throws TimeoutException, InterruptedException {
        leadLock.lock();
        try {
            followers++;
            try {
                while (readLead && !reply.isDone()) {
                    long left = deadline.remainingNanos();
                    if (left <= 0) throw new TimeoutException();
                    leadChanged.awaitNanos(left);
                }
            } finally {
                followers--;
            }
            if (reply.isDone()) return false;
            readLead = true;
            return true;
        } finally {
            leadLock.unlock();
        }
    }

    private void releaseLead() {
        leadLock.lock();
        try {
            readLead = false;
            if (followers > 0) leadChanged.signalAll();
        } finally {
            leadLock.unlock();
        }
    }

    /**
     * Reads and dispatches all the socket has now, without waiting; closes the connection at its end, on
     * garbage or on a read error. Several threads may call it; one reads at a time.
     */
    private void drain() {
        String reason = null;
        readMutex.lock();
        try {
            while (state != Qmp.State.CLOSED) {
                readBuf.clear();
                int n = channel.read(readBuf);
                if (n == 0) break;
                if (n < 0) {
                    reason = framer.pending() > 0 ? "QEMU closed the QMP connection in the middle of a message"
                            : "QEMU closed the QMP connection";
                    break;
                }
                readBuf.flip();
                framer.feed(readBuf);
            }
        } catch (ProtocolException e) {
            reason = "garbage on the QMP socket: " + e.getMessage();
        } catch (IOException e) {
            reason = "QMP read failed: " + e.getMessage();
        } finally {
            readMutex.unlock();
        }
        if (reason != null) close(QmpClosure.lost(reason));
    }

    /**
     * Reads what QEMU has sent already, without waiting, unless another thread is reading: a connection QEMU
     * has hung up on is lost, even when Kiln closes it before the reader noticed.
     */
    void readPending() {
        // an interrupted thread's read would close the channel, and the closure would say "read failed"
        if (state == Qmp.State.CLOSED || Thread.currentThread().isInterrupted() || !readMutex.tryLock()) return;
        try {
            drain();
        } finally {
            readMutex.unlock();
        }
    }

    /** Reads while no caller does: events, and the end of the connection. */
    private void idleReadLoop() {
        try {
            while (state != Qmp.State.CLOSED) {
                leadLock.lock();
                try {
                    idleWaiting = true;
                    // Callers read for themselves. Not told when they are done (that was a wake-up per
                    // command); looks again a little later, or when someone awaits an event.
                    while (callers > 0 && state != Qmp.State.CLOSED) leadChanged.awaitNanos(IDLE_RECHECK_NANOS);
                } finally {
                    idleWaiting = false;
                    leadLock.unlock();
                }
                if (state == Qmp.State.CLOSED) break;
                // A caller may start now and read in parallel: drain() lets one read at a time.
                idleSelector.select();
                idleSelector.selectedKeys().clear();
                if (!hasCallers()) drain(); // else the callers read it
            }
        } catch (ClosedSelectorException e) {
            // closed
        } catch (InterruptedException e) {
            close(QmpClosure.lost("QMP reader interrupted"));
        } catch (IOException e) {
            close(QmpClosure.lost("QMP wait failed: " + e.getMessage()));
        } finally {
            closeQuietly(idleSelector);
        }
    }

    private boolean hasCallers() {
        leadLock.lock();
        try {
            return callers > 0;
        } finally {
            leadLock.unlock();
        }
    }

    private void dispatch(ObjectNode msg) {
        transcript.received(msg);
        if (msg.has("QMP")) {
            greeting.complete(msg);
        } else if (msg.has("event")) {
            events.accept(msg);
        } else if (msg.has("return") || msg.has("error")) {
            InFlight oldest;
            synchronized (inFlight) {
                oldest = inFlight.pollFirst();
            }
            JsonNode id = msg.get("id");
            if (oldest == null) throw new ProtocolException("a QMP reply with no command in flight: " + msg);
            if (id != null && !id.asText().equals(oldest.id())) {
                throw new ProtocolException("a QMP reply out of order (expected id " + oldest.id() + "): " + msg);
            }
            oldest.reply().complete(msg); // an error without an id too: QEMU could not parse this command
            // the idle reader took a reply a caller was about to read: wake that caller from its select
            if (Thread.currentThread() == idleReader) callerSelector.wakeup();
            wakeFollowers();
        } else {
            throw new ProtocolException("unexpected QMP message: " + msg);
        }
    }

    /** Tells callers waiting for the lead that a reply came in (maybe theirs). */
    private void wakeFollowers() {
        leadLock.lock();
        try {
            if (followers > 0) leadChanged.signalAll();
        } finally {
            leadLock.unlock();
        }
    }

    private static void closeQuietly(Selector selector) {
        try {
            selector.close();
        } catch (IOException ignored) {
            // closing anyway
        }
    }

    /**
     * Closes once; later calls keep the first closure. Fails every pending command and wakes every waiter, at
     * once: a caller in select, one waiting for the lead, the idle reader.
     */
    void close(QmpClosure why) {
        synchronized (stateLock) {
            if (state == Qmp.State.CLOSED) return;
            closure = why;
            state = Qmp.State.CLOSED;
        }
        closeListener.accept(why);
        // the callers turn this into their command's failure (QmpClosure.commandFailed)
        KilnException failure = new KilnException("QMP connection closed: " + why.reason());
        greeting.completeExceptionally(failure);
        synchronized (inFlight) {
            inFlight.forEach(f -> f.reply().completeExceptionally(failure));
            inFlight.clear();
        }
        // wake whoever waits: the leading caller and the idle reader in their selectors, the others on the lock
        callerSelector.wakeup();
        idleSelector.wakeup();
        leadLock.lock();
        try {
            leadChanged.signalAll();
        } finally {
            leadLock.unlock();
        }
        try {
            channel.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        closeQuietly(callerSelector);
        closeQuietly(idleSelector);
        closedFuture.complete(null);
    }
}
