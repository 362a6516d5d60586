package dev.kiln.qemu;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/** The events of one QMP connection that nobody has taken yet, and the waits for them. */
final class QmpEventQueue {
    private final String peer;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition(); // an event queued, or the connection closed
    private final List<Queued> events = new ArrayList<>();
    private String closeReason; // guarded by lock

    QmpEventQueue(String peer) {
        this.peer = peer;
    }

    /** An event, and its message as QEMU sent it, for matching. */
    private record Queued(Event event, ObjectNode message) {}

    /** Queues an event message. */
    void add(ObjectNode message) {
        Queued queued = new Queued(QmpEventDecoder.decode(message), message);
        lock.lock();
        try {
            events.add(queued);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Returns the queued events and clears the queue. */
    List<Event> takeAll() {
        lock.lock();
        try {
            List<Event> out = events.stream().map(Queued::event).toList();
            events.clear();
            return out;
        } finally {
            lock.unlock();
        }
    }

    List<Event> peek() {
        lock.lock();
        try {
            return events.stream().map(Queued::event).toList();
        } finally {
            lock.unlock();
        }
    }

    /**
     * Waits for the first event matching any filter, queued or new; removes it from the queue and returns
     * it. Events that do not match stay queued. Fails at once if the connection closes first.
     */
    Event await(List<Qmp.EventFilter> filters, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        lock.lock();
        try {
            while (true) {
                for (Iterator<Queued> it = events.iterator(); it.hasNext(); ) {
                    Queued q = it.next();
                    for (Qmp.EventFilter f : filters) {
                        if (f.test(q.message())) {
                            it.remove();
                            return q.event();
                        }
                    }
                }
                if (closeReason != null) {
                    throw new KilnException("QMP connection to " + peer + " closed (" + closeReason
                            + ") while waiting for " + describe(filters));
                }
                long left = deadline.remainingNanos();
                if (left <= 0) {
                    throw new WaitTimeoutException("QMP event " + describe(filters), timeout,
                            "queued events: " + events.stream().map(Queued::event).toList());
                }
                changed.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for " + describe(filters), e);
        } finally {
            lock.unlock();
        }
    }

    /** Fails the waits under way and later ones; queued events can still be taken. */
    void close(String reason) {
        lock.lock();
        try {
            closeReason = reason;
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private static String describe(List<Qmp.EventFilter> filters) {
        StringBuilder b = new StringBuilder();
        for (Qmp.EventFilter f : filters) {
            if (!b.isEmpty()) b.append(" or ");
            b.append(f.name());
            if (f.match() != null && !f.match().isNull()) b.append(' ').append(f.match());
        }
        return b.toString();
    }
}
