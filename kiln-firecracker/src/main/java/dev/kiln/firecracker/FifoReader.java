package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.os.Posix;
import dev.kiln.support.Deadline;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.UUID;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A named pipe that Firecracker writes lines to (its log or its metrics), read by one daemon thread.
 * A platform thread, not a virtual one: a read of a FIFO blocks in the kernel and holds its carrier, and two
 * such readers would take every carrier of a two-core machine (nothing else virtual would run).
 *
 * <p>Kiln opens the FIFO read-write before Firecracker starts: Firecracker opens its end with O_NONBLOCK,
 * which fails when no reader exists yet, and a read-write open never blocks. The price is that the reader
 * never sees end-of-file (Kiln itself is a writer), so {@link #close()} writes a unique end marker into
 * the pipe: everything Firecracker wrote before it is read first, so nothing is lost.
 */
final class FifoReader implements AutoCloseable {
    /** Characters of text kept in memory; older text is dropped from the front. */
    static final int RETAINED_CHARS = 16 << 20;

    private final Path path;
    private final String name;
    private final Consumer<String> onLine;
    private final FileChannel channel;
    private final String endMarker = "kiln-fifo-end-" + UUID.randomUUID();
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final StringBuilder text = new StringBuilder();
    private long lineCount;
    private boolean ended;
    private String endReason;
    private final Thread reader;

    private FifoReader(Path path, String name, Consumer<String> onLine) throws IOException {
        this.path = path;
        this.name = name;
        this.onLine = onLine;
        this.channel = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE);
        this.reader = Thread.ofPlatform().daemon().name("kiln-fifo-" + name).stackSize(256 * 1024).start(this::readLoop);
    }

    /** Creates the FIFO at {@code path} (mode 0600; a jail hands it to Firecracker's user) and starts reading. */
    static FifoReader create(Path path, String name, Consumer<String> onLine) {
        try {
            Files.deleteIfExists(path);
            Posix.mkfifo(path, 0600);
            return new FifoReader(path, name, onLine);
        } catch (IOException e) {
            throw new KilnException("cannot open the " + name + " FIFO " + path + ": " + e.getMessage(), e);
        }
    }

    Path path() { return path; }

    private void readLoop() {
        ByteBuffer buffer = ByteBuffer.allocate(65536);
        String reason = "closed";
        try {
            outer:
            while (true) {
                if (channel.read(buffer) < 0) break;
                buffer.flip();
                int start = buffer.position();
                for (int i = start; i < buffer.limit(); i++) {
                    if (buffer.get(i) != '\n') continue;
                    byte[] line = new byte[i - start];
                    buffer.get(start, line);
                    start = i + 1;
                    String s = new String(line, StandardCharsets.UTF_8);
                    if (s.endsWith(endMarker)) { // after a partial last line of the writer's, if any
                        if (s.length() > endMarker.length()) append(s.substring(0, s.length() - endMarker.length()));
                        break outer;
                    }
                    append(s);
                }
                buffer.position(start);
                buffer.compact();
                if (!buffer.hasRemaining()) { // a line longer than the buffer: pass it on in pieces
                    buffer.flip();
                    append(StandardCharsets.UTF_8.decode(buffer).toString());
                    buffer.clear();
                }
            }
        } catch (IOException e) {
            reason = "read failed: " + e;
        } finally {
            lock.lock();
            try {
                ended = true;
                endReason = reason;
                changed.signalAll();
            } finally {
                lock.unlock();
            }
        }
    }

    private void append(String line) {
        lock.lock();
        try {
            text.append(line).append('\n');
            lineCount++;
            int over = text.length() - RETAINED_CHARS;
            if (over > 0) text.delete(0, over);
            changed.signalAll();
        } finally {
            lock.unlock();
        }
        onLine.accept(line);
    }

    String text() {
        lock.lock();
        try {
            return text.toString();
        } finally {
            lock.unlock();
        }
    }

    long lineCount() {
        lock.lock();
        try {
            return lineCount;
        } finally {
            lock.unlock();
        }
    }

    /** Waits until {@code pattern} matches anywhere in what was read (not only in new text). */
    MatchResult await(Pattern pattern, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        lock.lock();
        try {
            while (true) {
                Matcher m = pattern.matcher(text);
                if (m.find()) return m.toMatchResult();
                if (ended) return null;
                long left = deadline.remainingNanos();
                if (left <= 0) return null;
                changed.awaitNanos(left);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for /" + pattern + "/ in the " + name, e);
        } finally {
            lock.unlock();
        }
    }

    String describeEnd() {
        lock.lock();
        try {
            return ended ? "the " + name + " FIFO was " + endReason : "the " + name + " FIFO is open";
        } finally {
            lock.unlock();
        }
    }

    String tail(int chars) {
        return Text.tail(text(), chars);
    }

    /** Reads what is left, then stops. Call once the writer has gone (or to stop listening). */
    @Override
    public void close() {
        if (reader.isAlive()) {
            // A second, write-only open: FileChannel serializes a write behind the reader's blocked read on
            // the same channel. It cannot block, since this process holds a read end.
            try (FileChannel writer = FileChannel.open(path, StandardOpenOption.WRITE)) {
                writer.write(ByteBuffer.wrap((endMarker + "\n").getBytes(StandardCharsets.UTF_8)));
                reader.join(TimeUnit.SECONDS.toMillis(5));
            } catch (IOException e) {
                // The channel is gone already: the reader has stopped or is about to.
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        try {
            channel.close();
        } catch (IOException ignored) {
            // closing
        }
        try {
            reader.join(TimeUnit.SECONDS.toMillis(5));
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
