package dev.kiln.ssh;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.function.Consumer;

/**
 * Where one output stream of a command goes while a thread of Kiln's pumps it: the request's callback, or memory up to
 * a limit past which the rest is counted and dropped. A callback that throws is called no more and its failure kept.
 */
final class StreamSink {
    private final Consumer<byte[]> callback;
    private final long limit;
    private final ByteArrayOutputStream kept = new ByteArrayOutputStream();
    private long dropped;
    private RuntimeException failure;

    private StreamSink(Consumer<byte[]> callback, long limit) {
        this.callback = callback;
        this.limit = limit;
    }

    static StreamSink collect(long limit) {
        return new StreamSink(null, limit);
    }

    static StreamSink of(Consumer<byte[]> callback) {
        return new StreamSink(callback, 0);
    }

    /** Reads {@code in} to its end into this sink, on a virtual thread. */
    Thread pump(InputStream in, String name) {
        return Thread.ofVirtual().name(name).start(() -> {
            byte[] buf = new byte[32 << 10];
            try (in) {
                for (int n; (n = in.read(buf)) >= 0; ) accept(buf, n);
            } catch (IOException e) {
                // the channel was torn down under it: what came so far is kept
            }
        });
    }

    private synchronized void accept(byte[] buf, int n) {
        if (callback == null) {
            int keep = (int) Math.max(0, Math.min(n, limit - kept.size()));
            kept.write(buf, 0, keep);
            dropped += n - keep;
        } else if (failure == null) {
            byte[] chunk = new byte[n];
            System.arraycopy(buf, 0, chunk, 0, n);
            try {
                callback.accept(chunk);
            } catch (RuntimeException e) {
                failure = e;
            }
        }
    }

    synchronized byte[] bytes() { return kept.toByteArray(); }

    synchronized long dropped() { return dropped; }

    /** What the callback threw, if it did. */
    synchronized RuntimeException failure() { return failure; }
}
