package dev.kiln.agent;

import dev.kiln.agent.ExecPorts.Role;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.SelectionKey;
import java.nio.channels.Selector;
import java.nio.channels.SocketChannel;
import java.time.Duration;

/**
 * Reads a slot's stdout or stderr port for the slot's whole life and hands what comes to the current process's
 * sink. A process's stream ends when the slot learnt that nothing holds the port any more ({@link #requestEnd}) and the
 * VMM has handed over every byte written before that: then reading until the connection would block gets the rest.
 */
final class PortReader {
    private static final Logger log = LoggerFactory.getLogger(PortReader.class);
    private static final Duration DRAIN_QUERY = Duration.ofSeconds(10);

    private final ExecPorts ports;
    private final int slot;
    private final Role role;
    private final SocketChannel channel;
    private final Selector selector;
    private OutputSink endFor;    // under this: the sink whose end was asked for
    private volatile long received; // bytes for the current sink
    private final String name;
    private volatile OutputSink sink;
    private volatile Runnable onEnd;
    private volatile boolean stopped;
    private String drainProblem; // reader thread only
    private static final long RETRY_MILLIS = 100;

    PortReader(ExecPorts ports, int slot, Role role, String name) throws IOException {
        this.ports = ports;
        this.slot = slot;
        this.role = role;
        this.name = name;
        this.channel = ports.connect(slot, role);
        channel.configureBlocking(false);
        this.selector = Selector.open();
        channel.register(selector, SelectionKey.OP_READ);
        Thread.ofVirtual().name("kiln-exec-" + name).start(this::loop);
    }

    /** Where the next process's bytes go, and what to run once its stream ended. */
    synchronized void expect(OutputSink sink, Runnable onEnd) {
        this.onEnd = onEnd;
        this.sink = sink;
        this.endFor = null;
        this.received = 0;
    }

    /** Whether the stream of {@code s} ended or its end was asked for. */
    synchronized boolean endingOrEnded(OutputSink s) {
        return sink != s || endFor == s;
    }

    /** The sink bytes go to now (null between processes). */
    OutputSink current() {
        return sink;
    }

    /**
     * Nothing holds the port any more: end the stream of {@code forSink} once the VMM handed over all that was
     * written. A request for a sink that is no longer current (its stream ended already) is dropped.
     */
    void requestEnd(OutputSink forSink) {
        synchronized (this) {
            if (forSink == null || sink != forSink) return;
            endFor = forSink;
        }
        selector.wakeup();
    }

    /** The current process's stream is lost (its shell is gone): it ends, broken, and a writer blocked on it is let go. */
    void abandon(String reason) {
        end(reason);
    }

    void stop() {
        stopped = true;
        if (sink instanceof OutputSink.Pipe pipe) pipe.discard(); // lets a read loop blocked on a full pipe go
        for (java.io.Closeable c : new java.io.Closeable[] {selector, channel}) { // the selector first: it wakes the reader
            try {
                c.close();
            } catch (IOException ignored) {
                // closing anyway
            }
        }
    }

    private void loop() {
        ByteBuffer buf = ByteBuffer.allocate(64 << 10);
        String problem = null;
        try {
            while (!stopped) {
                int n = channel.read(buf);
                if (n > 0) {
                    deliver(buf);
                    continue;
                }
                if (n < 0) {
                    problem = "the VMM closed the port's connection";
                    break;
                }
                OutputSink ending;
                synchronized (this) {
                    ending = endFor;
                }
                // Nothing came for this process: the VMM never wrote to the connection, so it holds nothing back (it
                // holds bytes only after a write found the connection full). Otherwise ask it.
                if (ending != null && (received == 0 || drained())) {
                    while (channel.read(buf) > 0) deliver(buf);
                    endIf(ending);
                    continue;
                }
                // Woken by bytes, an end asked for, or (while an end waits on a queue QEMU could not report) a retry.
                if (ending != null && drainProblem != null) selector.select(RETRY_MILLIS);
                else selector.select();
                selector.selectedKeys().clear();
            }
        } catch (IOException | RuntimeException e) {
            if (!stopped) problem = e.toString();
        }
        if (problem != null) log.debug("{}: {}", name, problem);
        end(stopped ? "the machine's exec ports closed" : problem);
        if (!stopped) stop(); // the VMM is gone: release the connection and the selector
    }

    /** Whether QEMU's queue for the port is empty; a failed question is asked again (a QEMU without it: taken as yes). */
    private boolean drained() {
        try {
            boolean d = ports.drained(slot, role, DRAIN_QUERY);
            drainProblem = null;
            return d;
        } catch (RuntimeException e) {
            if (String.valueOf(e.getMessage()).contains("CommandNotFound")) return true;
            if (drainProblem == null) log.debug("{}: cannot ask whether the port's queue is empty: {}", name, e.toString());
            drainProblem = e.toString();
            return false;
        }
    }

    private void deliver(ByteBuffer buf) {
        buf.flip();
        received += buf.remaining();
        OutputSink s = sink;
        if (s != null) s.accept(buf.array(), 0, buf.remaining());
        else log.debug("{}: {} bytes with no process to take them", name, buf.remaining());
        buf.clear();
    }

    private void endIf(OutputSink expected) {
        OutputSink s;
        Runnable r;
        synchronized (this) {
            if (sink != expected) return;
            s = sink;
            r = onEnd;
            sink = null;
            onEnd = null;
            endFor = null;
        }
        s.end(null);
        if (r != null) r.run();
    }

    private void end(String problem) {
        OutputSink s;
        Runnable r;
        synchronized (this) {
            s = sink;
            r = onEnd;
            sink = null;
            onEnd = null;
            endFor = null;
        }
        if (s != null) s.end(problem);
        if (r != null) r.run();
    }
}
