package dev.kiln.qemu;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.support.Deadline;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The events of one QMP connection that nobody has taken yet, and the waits for them.
 *
 * <p>Bounded: a guest can make QEMU send events faster than anyone reads them, and an unread queue must not
 * grow the heap for ever. When full, the oldest event is dropped (and counted). An event that a wait under
 * way matches goes to that wait directly and never into the queue, so a full queue cannot push it out before
 * the waiting thread gets to it.
 */
final class QmpEventQueue {
    private static final Logger LOG = LoggerFactory.getLogger(Qmp.class);
    /** How many queued events a wait's timeout message shows. */
    private static final int SHOWN_ON_TIMEOUT = 10;

    private final String peer;
    private final int capacity;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition waitersChanged = lock.newCondition();
    private final ArrayDeque<Queued> events = new ArrayDeque<>();   // guarded by lock, oldest first
    private final ArrayDeque<Waiter> waiters = new ArrayDeque<>();  // guarded by lock, first come first served
    private long dropped;                                           // guarded by lock
    private QmpClosure closure;                                     // guarded by lock

    /** An event, and its message as QEMU sent it, for matching. */
    private record Queued(Event event, ObjectNode message) {}

    /** A wait under way; {@code taken} is set, under the lock, when an event is handed to it. */
    private static final class Waiter {
        final List<Qmp.EventFilter> filters;
        final Condition wake;
        Event taken;

        Waiter(List<Qmp.EventFilter> filters, Condition wake) {
            this.filters = filters;
            this.wake = wake;
        }
    }

    QmpEventQueue(String peer, int capacity) {
        if (capacity < 1) throw new IllegalArgumentException("an event queue holds at least one event: " + capacity);
        this.peer = peer;
        this.capacity = capacity;
    }

    /** Hands an event message to the first wait it matches, or queues it, dropping the oldest when full. */
    void add(ObjectNode message) {
        Queued queued = new Queued(QmpEventDecoder.decode(message), message);
        boolean firstDrop = false;
        lock.lock();
        try {
            for (Waiter w : waiters) {
                if (w.taken == null && matches(w.filters, message)) {
                    w.taken = queued.event();
                    w.wake.signal();
                    return;
                }
            }
            if (events.size() == capacity) {
                events.removeFirst();
                firstDrop = dropped++ == 0;
            }
            events.addLast(queued);
        } finally {
            lock.unlock();
        }
        if (firstDrop) {
            LOG.warn("QMP events of {} are not being read: the queue is full ({} events) and drops the oldest from now on"
                    + " (counted in Qmp.droppedEvents())", peer, capacity);
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

    /** How many events were dropped, oldest first, because the queue was full. */
    long dropped() {
        lock.lock();
        try {
            return dropped;
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
            for (Iterator<Queued> it = events.iterator(); it.hasNext(); ) {
                Queued q = it.next();
                if (matches(filters, q.message())) {
                    it.remove();
                    return q.event();
                }
            }
            Waiter w = new Waiter(filters, lock.newCondition());
            waiters.addLast(w);
            waitersChanged.signalAll();
            try {
                while (w.taken == null) {
                    if (closure != null) throw closure.waitFailed(peer, "QMP event " + describe(filters));
                    long left = deadline.remainingNanos();
                    if (left <= 0) throw new WaitTimeoutException("QMP event " + describe(filters) + " from " + peer, timeout, seen());
                    try {
                        w.wake.awaitNanos(left);
                    } catch (InterruptedException e) {
                        // an event handed over just now is this caller's: return it rather than lose it
                        if (w.taken != null) {
                            Thread.currentThread().interrupt();
                            break;
                        }
                        throw e;
                    }
                }
                return w.taken;
            } finally {
                waiters.remove(w);
                waitersChanged.signalAll();
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for " + describe(filters), e);
        } finally {
            lock.unlock();
        }
    }

    /**
     * Waits until {@code count} waits are under way: lets a test have an event arrive while a wait is
     * certainly waiting. False at the timeout.
     */
    boolean awaitWaiters(int count, Duration timeout) throws InterruptedException {
        Deadline deadline = Deadline.after(timeout);
        lock.lock();
        try {
            while (waiters.size() < count) {
                long left = deadline.remainingNanos();
                if (left <= 0) return false;
                waitersChanged.awaitNanos(left);
            }
            return true;
        } finally {
            lock.unlock();
        }
    }

    /** Fails the waits under way and later ones; queued events can still be taken. */
    void close(QmpClosure why) {
        lock.lock();
        try {
            closure = why;
            for (Waiter w : waiters) w.wake.signal();
        } finally {
            lock.unlock();
        }
    }

    private static boolean matches(List<Qmp.EventFilter> filters, ObjectNode message) {
        for (Qmp.EventFilter f : filters) {
            if (f.test(message)) return true;
        }
        return false;
    }

    /** What a timed-out wait saw: the newest queued events, then how many there are and what was dropped. */
    private String seen() {
        StringBuilder b = new StringBuilder();
        List<Queued> all = new ArrayList<>(events);
        for (Queued q : all.subList(Math.max(0, all.size() - SHOWN_ON_TIMEOUT), all.size())) b.append(q.event().json()).append('\n');
        // last: the message keeps the tail of what was seen
        b.append(all.size()).append(" event").append(all.size() == 1 ? "" : "s").append(" queued");
        if (all.size() > SHOWN_ON_TIMEOUT) b.append(", the newest ").append(SHOWN_ON_TIMEOUT).append(" above");
        if (dropped > 0) b.append("; ").append(dropped).append(" older ones dropped (the queue holds ").append(capacity).append(')');
        return b.toString();
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
