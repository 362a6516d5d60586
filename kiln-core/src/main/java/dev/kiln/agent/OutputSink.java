package dev.kiln.agent;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InterruptedIOException;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/** Where one stream of a guest process goes: a callback, a bounded pipe read as an InputStream, or memory. */
sealed interface OutputSink permits OutputSink.Callback, OutputSink.Pipe, OutputSink.Collect {
    /** Takes bytes the process wrote; may block (that is the back-pressure). */
    void accept(byte[] bytes, int off, int len);

    /** The stream ended (nothing more will come); {@code problem} is null unless it broke. */
    void end(String problem);

    static OutputSink of(Consumer<byte[]> callback) {
        return new Callback(callback);
    }

    /** Hands chunks to a callback; one that throws is called no more (the rest is dropped) and its failure kept. */
    final class Callback implements OutputSink {
        private final Consumer<byte[]> callback;
        private volatile RuntimeException failure;

        Callback(Consumer<byte[]> callback) {
            this.callback = callback;
        }

        @Override
        public void accept(byte[] bytes, int off, int len) {
            if (failure != null) return;
            byte[] chunk = new byte[len];
            System.arraycopy(bytes, off, chunk, 0, len);
            try {
                callback.accept(chunk);
            } catch (RuntimeException e) {
                failure = e;
            }
        }

        @Override
        public void end(String problem) {}

        /** What the callback threw, if it did. */
        RuntimeException failure() { return failure; }
    }

    /** Keeps up to {@code limit} bytes; past that it drops the rest and remembers that it did. */
    final class Collect implements OutputSink {
        private final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        private final long limit;
        private long dropped;

        Collect(long limit) {
            this.limit = limit;
        }

        @Override
        public synchronized void accept(byte[] b, int off, int len) {
            int keep = (int) Math.max(0, Math.min(len, limit - bytes.size()));
            bytes.write(b, off, keep);
            dropped += len - keep;
        }

        @Override
        public void end(String problem) {}

        synchronized byte[] bytes() { return bytes.toByteArray(); }

        synchronized long dropped() { return dropped; }
    }

    /**
     * A bounded pipe: the writer waits while it is full, so a process that writes faster than its reader reads is held
     * back in the guest. Once {@linkplain #discard() discarded} it drops what comes and never blocks.
     */
    final class Pipe extends InputStream implements OutputSink {
        private final byte[] ring;
        private final ReentrantLock lock = new ReentrantLock();
        private final Condition changed = lock.newCondition();
        private final String name;
        private int head, size;
        private boolean ended, discarded;
        private String problem;

        Pipe(int capacity, String name) {
            this.ring = new byte[capacity];
            this.name = name;
        }

        @Override
        public void accept(byte[] b, int off, int len) {
            lock.lock();
            try {
                while (len > 0) {
                    while (size == ring.length && !discarded && !ended) changed.awaitUninterruptibly();
                    if (discarded || ended) return; // ended: the stream was given up; what comes after is not its
                    int tail = (head + size) % ring.length;
                    int n = Math.min(len, Math.min(ring.length - size, ring.length - tail));
                    System.arraycopy(b, off, ring, tail, n);
                    size += n;
                    off += n;
                    len -= n;
                    changed.signalAll();
                }
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void end(String problem) {
            lock.lock();
            try {
                ended = true;
                if (this.problem == null) this.problem = problem;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        /** Drops what is buffered and all that comes later: nobody will read it. */
        void discard() {
            lock.lock();
            try {
                discarded = true;
                size = 0;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }

        @Override
        public int read() throws IOException {
            byte[] one = new byte[1];
            return read(one, 0, 1) < 0 ? -1 : one[0] & 0xff;
        }

        @Override
        public int read(byte[] b, int off, int len) throws IOException {
            if (len == 0) return 0;
            lock.lock();
            try {
                while (size == 0 && !ended && !discarded) changed.await();
                if (size == 0) {
                    if (discarded) throw new IOException(name + " is closed");
                    if (problem != null) throw new IOException(name + " broke: " + problem);
                    return -1;
                }
                int n = Math.min(len, Math.min(size, ring.length - head));
                System.arraycopy(ring, head, b, off, n);
                head = (head + n) % ring.length;
                size -= n;
                changed.signalAll();
                return n;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new InterruptedIOException("interrupted while reading " + name);
            } finally {
                lock.unlock();
            }
        }

        @Override
        public int available() {
            lock.lock();
            try {
                return size;
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void close() {
            discard();
        }
    }
}
