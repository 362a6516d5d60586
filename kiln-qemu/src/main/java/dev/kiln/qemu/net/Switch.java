package dev.kiln.qemu.net;

import dev.kiln.KilnException;
import dev.kiln.os.Fd;
import dev.kiln.os.Poller;
import dev.kiln.os.Posix;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.time.Duration;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;
import java.util.concurrent.CancellationException;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

import static dev.kiln.os.Poller.EAGAIN;

/**
 * The learning switch behind a {@link Network}: one platform thread polls every port's socket (non-blocking),
 * reassembles the length-prefixed frames, applies the faults and queues each frame to its destinations. Nothing
 * waits on a slow port: a full output queue drops the frame and counts it.
 *
 * <p>Everything but {@link #call} and {@link #close} runs on the switch's thread: control calls are tasks the
 * loop runs between two polls (an eventfd wakes it), so the loop's state needs no locks.
 */
final class Switch implements Runnable {
    private static final Logger log = LoggerFactory.getLogger(Network.class);

    static final int MIN_FRAME_BYTES = 14, MAX_FRAME_BYTES = 65_536;
    /** Room for the longest frame plus a good batch of short ones in one read. */
    private static final long INPUT_BYTES = 4 + MAX_FRAME_BYTES + 64 * 1024;
    private static final Duration CONTROL_TIMEOUT = Duration.ofSeconds(30);
    private static final ValueLayout.OfInt BE_INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final ValueLayout.OfShort BE_SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.BIG_ENDIAN);
    private static final int EPIPE = 32, ECONNRESET = 104;
    private static final long GROUP_BIT = 1L << 40; // lowest bit of the first octet: multicast and broadcast

    private final String name;
    private final long queueBytes;
    private final SplittableRandom random;
    private final Fd wakeup = Posix.eventFd();
    private final Thread thread;

    private final Object lock = new Object();
    private final ArrayDeque<FutureTask<?>> commands = new ArrayDeque<>(); // guarded by lock
    private boolean accepting = true; // guarded by lock
    private volatile boolean stopRequested; // written under lock
    private volatile Throwable failure;

    // Confined to the switch's thread.
    private final List<Link> links = new ArrayList<>();
    private final MacTable<Link> macs = new MacTable<>();
    private final Set<Long> cuts = new HashSet<>(); // port id pairs (lower << 32 | higher) whose frames are dropped
    private Poller poller;
    private int nextLinkId;

    Switch(String name, long queueBytes, long seed) {
        this.name = name;
        this.queueBytes = queueBytes;
        this.random = new SplittableRandom(seed);
        this.thread = Thread.ofPlatform().name("kiln-network-" + name).daemon(true).unstarted(this);
    }

    void start() {
        thread.start();
    }

    // ---- control, from any thread

    /** Runs {@code body} on the switch's thread between two polls and returns its result. */
    <T> T call(String what, Callable<T> body) {
        FutureTask<T> task = new FutureTask<>(body);
        synchronized (lock) {
            if (!accepting) throw closed(what);
            commands.add(task);
            Posix.signalEventFd(wakeup);
        }
        try {
            return task.get(CONTROL_TIMEOUT.toMillis(), TimeUnit.MILLISECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof RuntimeException r) throw r;
            throw new KilnException("network " + name + ": " + what + " failed: " + e.getCause(), e.getCause());
        } catch (CancellationException e) {
            throw closed(what);
        } catch (TimeoutException e) {
            throw new KilnException("network " + name + ": " + what + " was not done within " + CONTROL_TIMEOUT.toSeconds()
                    + " s; its switch thread " + thread.getName() + " is " + thread.getState());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for network " + name + " to " + what, e);
        }
    }

    private KilnException closed(String what) {
        Throwable f = failure;
        return new KilnException("network " + name + " is closed" + (f != null ? " (its switch failed: " + f + ")" : "")
                + "; cannot " + what, f);
    }

    /** Stops the loop, which closes every port's socket; waits for the thread to end. Idempotent. */
    void close() {
        synchronized (lock) {
            if (!stopRequested) {
                stopRequested = true;
                if (accepting) Posix.signalEventFd(wakeup);
            }
        }
        if (Thread.currentThread() == thread) return;
        try {
            thread.join(CONTROL_TIMEOUT.toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (thread.isAlive()) throw new KilnException("network " + name + ": switch thread " + thread.getName()
                + " did not stop within " + CONTROL_TIMEOUT.toSeconds() + " s (state " + thread.getState() + ")");
    }

    boolean isRunning() {
        return thread.isAlive();
    }

    // ---- commands, run on the switch's thread

    Link attach(String portName, Fd switchEnd) {
        Link link = new Link(nextLinkId++, portName, switchEnd, INPUT_BYTES, queueBytes);
        links.add(link);
        return link;
    }

    /** Disconnects {@code link} (if still connected) and forgets it; its counters stay readable. */
    void detach(Link link) {
        disconnect(link, "the port was closed", false);
        links.remove(link);
    }

    void cut(Link a, Link b) {
        cuts.add(pair(a, b));
    }

    void heal() {
        cuts.clear();
        for (Link l : links) {
            l.up = true;
            l.loss = 0;
            l.delayNanos = 0;
        }
    }

    void linkDown(Link l) {
        l.up = false;
        // A pulled cable loses what was on it; a frame already half sent must still be finished, or the framing breaks.
        if (l.connected) l.droppedByFault += l.out.dropQueued();
    }

    int partitions() {
        return cuts.size();
    }

    int learnedAddresses() {
        return macs.size();
    }

    List<Link> links() {
        return links;
    }

    // ---- the loop

    @Override
    public void run() {
        try (Poller p = new Poller(); Arena arena = Arena.ofConfined()) {
            poller = p;
            MemorySegment wakeBuffer = arena.allocate(8, 8);
            int wakeNumber = wakeup.number();
            while (true) {
                runCommands();
                if (stopRequested) break;
                long now = System.nanoTime();
                long nextDue = Long.MAX_VALUE;
                poller.clear();
                int wakeIndex = poller.add(wakeNumber, Poller.IN);
                for (Link l : links) {
                    if (!l.connected) {
                        l.pollIndex = -1;
                        continue;
                    }
                    nextDue = Math.min(nextDue, l.out.release(now));
                    l.pollIndex = poller.add(l.fdNumber, l.out.hasReleased() ? (short) (Poller.IN | Poller.OUT) : Poller.IN);
                }
                int timeout = nextDue == Long.MAX_VALUE ? -1
                        : (int) Math.min(Integer.MAX_VALUE, Math.max(0, Math.ceilDiv(nextDue - now, 1_000_000L)));
                if (poller.poll(timeout) == 0) continue;
                if (poller.ready(wakeIndex) != 0) poller.read(wakeNumber, wakeBuffer);
                // Commands run only at the top of the loop, so the list does not change while ports are served.
                for (Link l : links) {
                    if (l.pollIndex < 0 || !l.connected) continue;
                    short events = poller.ready(l.pollIndex);
                    if (events == 0) continue;
                    if ((events & Poller.OUT) != 0) flush(l, System.nanoTime());
                    if (l.connected && (events & (Poller.IN | Poller.HANGUP | Poller.ERROR | Poller.INVALID)) != 0) receive(l);
                }
                // Send what was just queued now rather than one poll later: it halves the syscalls per frame.
                now = System.nanoTime();
                for (Link l : links) if (l.connected && !l.out.isEmpty()) flush(l, now);
            }
        } catch (Throwable t) {
            failure = t;
            log.error("network {}: switch stopped by an unexpected error", name, t);
        } finally {
            shutDown();
        }
    }

    private void runCommands() {
        while (true) {
            FutureTask<?> task;
            synchronized (lock) {
                task = commands.poll();
            }
            if (task == null) return;
            task.run();
        }
    }

    private void shutDown() {
        List<FutureTask<?>> pending;
        synchronized (lock) {
            accepting = false;
            stopRequested = true;
            pending = List.copyOf(commands);
            commands.clear();
        }
        for (FutureTask<?> task : pending) task.cancel(false);
        for (Link l : links) {
            try {
                disconnect(l, "the network was closed", false);
            } catch (RuntimeException e) {
                log.warn("network {}: closing port {} failed", name, l.name, e);
            }
        }
        wakeup.close();
    }

    /** Reads what the port has, forwarding each complete frame; disconnects it at end of file or bad framing. */
    private void receive(Link l) {
        long n = poller.read(l.fdNumber, l.input.asSlice(l.filled));
        if (n == 0) {
            disconnect(l, "its machine closed the connection", false);
            return;
        }
        if (n < 0) {
            if (n != -EAGAIN) disconnect(l, "reading from it failed: " + Poller.describe((int) -n), n != -ECONNRESET);
            return;
        }
        l.filled += n;
        MemorySegment in = l.input;
        long now = System.nanoTime();
        long pos = 0;
        while (l.filled - pos >= 4) {
            int length = in.get(BE_INT, pos);
            if (length < MIN_FRAME_BYTES || length > MAX_FRAME_BYTES) {
                disconnect(l, "it sent a frame length of " + Integer.toUnsignedString(length) + " bytes, outside "
                        + MIN_FRAME_BYTES + ".." + MAX_FRAME_BYTES + " (is it speaking QEMU's -netdev socket framing: "
                        + "4-byte big-endian length, then the Ethernet frame?)", true);
                return;
            }
            if (l.filled - pos - 4 < length) break;
            forward(l, pos + 4, length, now);
            pos += 4 + length;
        }
        if (pos > 0) {
            MemorySegment.copy(in, pos, in, 0, l.filled - pos);
            l.filled -= pos;
        }
    }

    private void forward(Link from, long offset, int length, long now) {
        from.framesIn++;
        from.bytesIn += length;
        if (!from.up || lose(from)) {
            from.droppedByFault++;
            return;
        }
        MemorySegment in = from.input;
        long destination = (long) (in.get(BE_SHORT, offset) & 0xffff) << 32 | in.get(BE_INT, offset + 2) & 0xffffffffL;
        long source = (long) (in.get(BE_SHORT, offset + 6) & 0xffff) << 32 | in.get(BE_INT, offset + 8) & 0xffffffffL;
        if ((source & GROUP_BIT) == 0) macs.put(source, from);
        if ((destination & GROUP_BIT) == 0) {
            Link to = macs.get(destination);
            if (to != null) {
                if (to != from) deliver(from, to, offset, length, now);
                return;
            }
        }
        for (Link to : links) if (to != from) deliver(from, to, offset, length, now);
    }

    private void deliver(Link from, Link to, long offset, int length, long now) {
        if (!to.connected) return;
        if (!to.up || (!cuts.isEmpty() && cuts.contains(pair(from, to))) || lose(to)) {
            to.droppedByFault++;
            return;
        }
        long delay = from.delayNanos + to.delayNanos;
        if (!to.out.offer(from.input, offset, length, now + delay)) to.droppedQueueFull++;
    }

    private boolean lose(Link l) {
        return l.loss > 0 && (l.loss >= 1 || random.nextDouble() < l.loss);
    }

    /** Sends the port's released frames until its socket is full. */
    private void flush(Link l, long now) {
        OutputQueue out = l.out;
        out.release(now);
        while (out.hasReleased()) {
            long n = poller.send(l.fdNumber, out.sendable());
            if (n > 0) {
                out.sent(n);
            } else {
                // EPIPE and ECONNRESET: the machine has gone, which is no news worth a warning.
                if (n != -EAGAIN) disconnect(l, "sending to it failed: " + Poller.describe((int) -n), n != -EPIPE && n != -ECONNRESET);
                return;
            }
        }
    }

    private void disconnect(Link l, String reason, boolean unexpected) {
        if (!l.connected) return;
        macs.removeAll(l);
        l.release(reason);
        if (unexpected) log.warn("network {}: port {} disconnected: {}", name, l.name, reason);
        else log.debug("network {}: port {} disconnected: {}", name, l.name, reason);
    }

    private static long pair(Link a, Link b) {
        int low = Math.min(a.id, b.id), high = Math.max(a.id, b.id);
        return (long) low << 32 | high;
    }

    String name() {
        return name;
    }
}
