package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.support.JsonFramer;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Consumer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import java.util.concurrent.CompletableFuture;

/**
 * A QMP client on a connected stream. Commands may be sent from any thread; replies go to their command in
 * the order sent (see {@link #call}), events are queued for {@link #events()} and {@link #awaitEvent}.
 *
 * <p>The parts: {@link QmpConnection} (the stream, who reads it, which reply is whose, the run state),
 * {@link QmpEventQueue} (events not taken yet, and the waits for them), {@link QmpTranscript}.
 *
 * <p>Run states: {@code CONNECTING} (greeting and capabilities pending) → {@code RUNNING} → {@code CLOSED}.
 * Once closed, every pending and later command fails at once with the reason: closed by Kiln or lost from
 * QEMU's side (end of stream, garbage, an I/O error), see {@link #close(String)}.
 */
public final class Qmp implements AutoCloseable {
    public enum State { CONNECTING, RUNNING, CLOSED }

    public static final Duration DEFAULT_COMMAND_TIMEOUT = Duration.ofSeconds(30);
    /** How many events not taken yet are kept; beyond, the oldest are dropped (see {@link #droppedEvents()}). */
    public static final int EVENT_QUEUE_CAPACITY = 1000;

    private static final Logger LOG = LoggerFactory.getLogger(Qmp.class);
    private final QmpTranscript transcript = new QmpTranscript();
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final QmpEventQueue events;
    private final QmpConnection connection;

    private Qmp(String name, SocketChannel channel) throws IOException {
        this.events = new QmpEventQueue(name, EVENT_QUEUE_CAPACITY);
        this.connection = new QmpConnection(name, channel, transcript, this::received, events::close);
    }

    /** An event from QEMU: to the listeners (on the reading thread), then to the queue. */
    private void received(ObjectNode message) {
        if (!listeners.isEmpty()) {
            String name = message.path("event").asText();
            Event event = null;
            for (Listener l : listeners) {
                if (!l.name().equals(name)) continue;
                if (event == null) event = QmpEventDecoder.decode(message);
                try {
                    l.action().accept(event);
                } catch (RuntimeException e) {
                    LOG.warn("a listener of QMP event {} failed", name, e);
                }
            }
        }
        events.add(message);
    }

    private record Listener(String name, Consumer<Event> action) {}

    /**
     * Runs {@code action} on every event named {@code name} from now on, as it arrives (on the thread reading QMP:
     * keep it short, and wait for nothing in it), before the event is queued.
     */
    public void onEvent(String name, Consumer<Event> action) {
        listeners.add(new Listener(Objects.requireNonNull(name, "name"), Objects.requireNonNull(action, "action")));
    }

    /** Starts reading, awaits the greeting and negotiates capabilities. Closes the channel on failure. */
    public static Qmp connect(String name, SocketChannel channel, Duration timeout) {
        Qmp qmp;
        try {
            qmp = new Qmp(name, channel);
        } catch (IOException e) {
            try {
                channel.close();
            } catch (IOException ignored) {
                // failing anyway
            }
            throw new KilnException("cannot set up the QMP connection to " + name + ": " + e.getMessage(), e);
        }
        qmp.connection.handshake(timeout);
        return qmp;
    }

    public State state() { return connection.state(); }

    /** Why the connection closed, or null while open. */
    public String closeReason() {
        QmpClosure c = connection.closure();
        return c == null ? null : c.reason();
    }

    /** Whether Kiln closed the connection ({@link #close(String)}), rather than lost it from QEMU's side. */
    public boolean closedByKiln() {
        QmpClosure c = connection.closure();
        return c != null && c.byKiln();
    }

    /** Completes when the connection has closed, for whatever reason. */
    public CompletableFuture<Void> onClose() { return connection.onClose(); }

    /** QEMU's greeting, e.g. {@code {"QMP": {"version": …, "capabilities": […]}}}. */
    public ObjectNode greeting() { return connection.greeting(); }

    /** Runs a command and returns its {@code return} value; errors become {@link QmpException}. */
    public JsonNode execute(String command) {
        return execute(command, null, DEFAULT_COMMAND_TIMEOUT);
    }

    public JsonNode execute(String command, ObjectNode arguments) {
        return execute(command, arguments, DEFAULT_COMMAND_TIMEOUT);
    }

    public JsonNode execute(String command, ObjectNode arguments, Duration timeout) {
        ObjectNode response = call(command, arguments, timeout);
        JsonNode error = response.get("error");
        if (error != null) {
            throw new QmpException(command, error.path("class").asText("?"), error.path("desc").asText(""), response);
        }
        return response.get("return");
    }

    /**
     * Runs a command and returns the whole response, error or not. Commands go without an "id" and QEMU
     * answers them in the order sent (see {@link QmpConnection#call}).
     */
    public ObjectNode call(String command, ObjectNode arguments, Duration timeout) {
        return connection.call(command, arguments, timeout, false);
    }

    /** The last QMP messages both ways ({@code →} sent, {@code ←} received), for diagnostics. */
    public List<String> transcript() { return transcript.lines(); }

    /** Turns the transcript on or off (it costs a string per message). */
    public void recordTranscript(boolean on) { transcript.recording(on); }

    /**
     * Queues an event message as if QEMU had sent it: for what Kiln itself notices about the VM (a panic on the
     * console). Stamped now, as QEMU stamps its own, unless it carries a timestamp.
     */
    void post(ObjectNode message) {
        if (!message.has("timestamp")) {
            Instant now = Instant.now();
            message.set("timestamp", JsonNodeFactory.instance.objectNode()
                    .put("seconds", now.getEpochSecond()).put("microseconds", now.getNano() / 1000));
        }
        events.add(message);
    }

    /** Returns the queued events and clears the queue. */
    public List<Event> events() { return events.takeAll(); }

    /** The queued events, left in the queue. */
    public List<Event> peekEvents() { return events.peek(); }

    /**
     * How many events were dropped unread because {@value #EVENT_QUEUE_CAPACITY} newer ones were queued (oldest
     * first). An event that a wait under way matches is never dropped: it goes to that wait.
     */
    public long droppedEvents() { return events.dropped(); }

    /** The event queue, for tests that need a wait to be under way. */
    QmpEventQueue eventQueue() { return events; }

    /** A named event and an optional partial match of its whole message (see {@link EventMatch}). */
    public record EventFilter(String name, JsonNode match) {
        public boolean test(Event e) {
            if (!e.name().equals(name)) return false;
            try {
                return EventMatch.matches(JsonFramer.JSON.readTree(e.json()), match);
            } catch (IOException x) {
                throw new IllegalArgumentException("the event's JSON does not parse: " + e.json(), x);
            }
        }

        boolean test(ObjectNode message) {
            return name.equals(message.path("event").asText()) && EventMatch.matches(message, match);
        }
    }

    /** Waits for an event named {@code name} whose message matches {@code match} (null: any). */
    public Event awaitEvent(String name, JsonNode match, Duration timeout) {
        return awaitAnyEvent(List.of(new EventFilter(name, match)), timeout);
    }

    /**
     * Waits for the first event matching any filter, queued or new; removes it from the queue and returns
     * it. Events that do not match stay queued. Fails at once if the connection closes first.
     */
    public Event awaitAnyEvent(List<EventFilter> filters, Duration timeout) {
        connection.wakeIdleReader();
        return events.await(filters, timeout);
    }

    /** {@link #close(String)} with the reason "closed by Kiln". */
    @Override
    public void close() {
        close("closed by Kiln");
    }

    /**
     * Closes the connection, once (a later close keeps the first reason). Commands in flight and later ones,
     * and event waits under way and later ones, fail at once with {@link dev.kiln.MachineClosedException}
     * carrying {@code reason}. A connection lost from QEMU's side fails them with {@link QmpException} (commands)
     * or {@link KilnException} (waits) instead, and so does a connection QEMU had hung up on before this close.
     * Events queued before the close can still be taken.
     */
    public void close(String reason) {
        connection.readPending(); // QEMU may have hung up first: then the connection was lost, not closed
        connection.close(QmpClosure.byKiln(reason));
    }
}
