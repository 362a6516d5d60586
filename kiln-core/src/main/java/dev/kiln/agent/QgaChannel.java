package dev.kiln.agent;

import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Text;
import dev.kiln.support.JsonFramer;
import dev.kiln.support.ProtocolException;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.ClosedByInterruptException;
import java.nio.channels.ClosedChannelException;
import java.nio.channels.SocketChannel;
import java.time.Duration;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;

/**
 * One connection to a guest agent: a virtual thread reads the channel and queues what arrives (replies,
 * garbage, the end of the connection) for the requester, which polls with its deadline. Knows nothing of
 * the QGA commands; {@link QgaSession} speaks the protocol on top.
 */
final class QgaChannel implements AutoCloseable {
    /** Something the reader saw, or a wake-up. */
    sealed interface Inbound permits Reply, Garbage, Closed, Wake {}

    record Reply(ObjectNode message) implements Inbound {}

    /** The agent sent bytes that are not JSON objects; the stream is out of step. */
    record Garbage(ProtocolException problem) implements Inbound {}

    /** The connection ended; every later poll sees this again. */
    record Closed(String reason, Throwable cause, boolean writeTimedOut) implements Inbound {}

    /** Not from the agent: {@link #wake()} asks a waiting sync to resend at once. */
    record Wake() implements Inbound {}

    /** Closes a channel whose write outlives its deadline: a blocking write cannot time out by itself. */
    private static final ScheduledExecutorService WRITE_WATCHDOG = watchdog();

    private final SocketChannel channel;
    private final LinkedBlockingQueue<Inbound> inbound = new LinkedBlockingQueue<>();
    private final JsonFramer framer = new JsonFramer(message -> inbound.add(new Reply(message)));
    private final Thread reader;
    private boolean skipping; // reader thread only
    private volatile Closed closed;

    QgaChannel(SocketChannel channel, String name) throws IOException {
        this.channel = channel;
        channel.configureBlocking(true);
        this.reader = Thread.ofVirtual().name("kiln-qga-reader-" + name).start(this::readLoop);
    }

    private void readLoop() {
        ByteBuffer buf = ByteBuffer.allocateDirect(256 << 10);
        try {
            while (true) {
                if (channel.read(buf) < 0) {
                    end(framer.pending() > 0 ? "the agent closed the connection in the middle of a message"
                            : "the agent closed the connection", null, false);
                    return;
                }
                buf.flip();
                while (buf.hasRemaining()) {
                    if (skipping) {
                        skipToDelimiter(buf);
                        if (!buf.hasRemaining()) break;
                        skipping = false;
                    }
                    try {
                        framer.feed(buf);
                    } catch (ProtocolException e) {
                        // Out of step: whatever follows is suspect until the 0xFF that precedes the answer
                        // to the guest-sync-delimited the next request sends. Skipping there also spares
                        // an exception per byte of a long run of garbage.
                        inbound.add(new Garbage(e));
                        skipping = true;
                    }
                }
                buf.clear();
            }
        } catch (ClosedChannelException e) {
            end("the connection was closed", null, false); // by close(); its reason wins
        } catch (IOException e) {
            end("reading from the agent failed: " + e.getMessage(), e, false);
        } catch (RuntimeException | Error e) {
            end("the reader failed: " + e, e, false);
            throw e;
        }
    }

    private static void skipToDelimiter(ByteBuffer buf) {
        while (buf.hasRemaining()) {
            if (buf.get(buf.position()) == (byte) 0xFF) return;
            buf.position(buf.position() + 1);
        }
    }

    /**
     * Writes one whole request; a write still blocked after {@code limit} closes the connection (the agent
     * stopped reading), and so does any write failure.
     *
     * @throws IOException when the bytes could not all be written; {@link #closed()} then says why
     */
    void send(byte[] bytes, Duration limit) throws IOException {
        Closed c = closed;
        if (c != null) throw new ClosedChannelException();
        ScheduledFuture<?> watchdog = WRITE_WATCHDOG.schedule(() -> end("a request of " + bytes.length
                        + " bytes was not taken within " + Text.human(limit) + ": the agent stopped reading",
                null, true), limit.toNanos(), TimeUnit.NANOSECONDS);
        try {
            ByteBuffer buf = ByteBuffer.wrap(bytes);
            while (buf.hasRemaining()) channel.write(buf);
        } catch (ClosedByInterruptException e) {
            end("the requesting thread was interrupted while writing, which closes the channel", e, false);
            throw e;
        } catch (IOException e) {
            end("writing to the agent failed: " + e.getMessage(), e, false);
            throw e;
        } finally {
            watchdog.cancel(false);
        }
    }

    /** The next thing the reader saw, waiting at most {@code nanos}; null when nothing came in time. Skips wake-ups. */
    Inbound next(long nanos) throws InterruptedException {
        long end = System.nanoTime() + nanos;
        while (true) {
            Inbound in = nextOrWake(Math.max(0, end - System.nanoTime()));
            if (!(in instanceof Wake)) return in;
        }
    }

    /** {@link #next}, returning a {@link Wake} too. */
    Inbound nextOrWake(long nanos) throws InterruptedException {
        Inbound in = nanos > 0 ? inbound.poll(nanos, TimeUnit.NANOSECONDS) : inbound.poll();
        if (in instanceof Closed) inbound.add(in); // stays visible to every later poll
        return in;
    }

    /** Wakes whoever waits in {@link #nextOrWake}, or the next to wait there. */
    void wake() {
        inbound.add(new Wake());
    }

    /** Whether anything unread came from the agent: with no request outstanding, the stream is out of step. */
    boolean hasUnread() {
        for (Inbound in : inbound) if (in instanceof Reply || in instanceof Garbage) return true;
        return false;
    }

    /** Drops everything queued except the end of the connection. */
    void discardUnread() {
        inbound.removeIf(in -> !(in instanceof Closed));
    }

    /** Why the connection ended, or null while it is open. */
    Closed closed() {
        return closed;
    }

    /** Ends the connection with a reason that every pending and later request reports. */
    void end(String reason, Throwable cause, boolean writeTimedOut) {
        Closed c;
        synchronized (this) {
            if (closed != null) return;
            c = closed = new Closed(reason, cause, writeTimedOut);
        }
        inbound.add(c);
        try {
            channel.close();
        } catch (IOException ignored) {
            // closing is all we wanted
        }
    }

    @Override
    public void close() {
        close("the host closed the connection");
    }

    /** Ends the connection with {@code reason} and waits a moment for the reader to finish. */
    void close(String reason) {
        end(reason, null, false);
        try {
            reader.join(Duration.ofSeconds(2));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static ScheduledExecutorService watchdog() {
        ScheduledThreadPoolExecutor ex = new ScheduledThreadPoolExecutor(1, r -> {
            Thread t = new Thread(r, "kiln-qga-write-watchdog");
            t.setDaemon(true);
            return t;
        });
        ex.setRemoveOnCancelPolicy(true);
        return ex;
    }
}
