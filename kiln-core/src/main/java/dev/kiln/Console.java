package dev.kiln;

import dev.kiln.support.Deadline;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.WeakHashMap;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * A guest's serial console: everything it printed (the in-memory transcript keeps a bounded tail; a tee
 * file keeps all), expect-style {@link #await} and {@link #send}. One virtual thread reads it.
 *
 * <p>Awaiting works like expect, with a cursor per waiter: a match moves that waiter's cursor past itself,
 * so its next await only sees later output. {@link #await} gives every calling thread a cursor of its own,
 * starting at the beginning of the transcript on that thread's first await: two threads awaiting the same
 * text both see it, and neither can take the other's match. For a cursor that starts elsewhere, or one to
 * hand between threads, use {@link #cursor()} (from now on) or {@link #cursorAtStart()}.
 * {@link #transcript()} always shows everything retained.
 *
 * <p>Tees ({@link #teeTo}, {@link #teeLines}) see the output as it is read; one that fails is reported
 * ({@link #teeFailure()}, and once in the log) and dropped, and the console goes on reading.
 */
public final class Console implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(Console.class);
    /** Characters kept in memory; older output is only in the tee file. */
    public static final int DEFAULT_RETAINED_CHARS = 4 << 20;
    /**
     * After a read that did not fill the buffer, the reader lets this long pass before reading again, so that
     * output trickling in a few bytes at a time (a UART under TCG) is read in batches rather than with a wake-up
     * every couple of bytes, each costing CPU the emulated vCPU wants. Output already read is handed to waiters
     * at once; only bytes arriving within the pause wait, by at most this long. 0 reads at once.
     * Tunable: {@code kiln.console.batchMicros}.
     */
    static final long BATCH_NANOS = Long.getLong("kiln.console.batchMicros", 1000) * 1000;
    private static final int READ_BUFFER = 16384;

    private final String name;
    private final int retainedChars;
    private final ReentrantLock lock = new ReentrantLock();
    private final Condition changed = lock.newCondition();
    private final StringBuilder text = new StringBuilder();
    private final CharsetDecoder decoder = StandardCharsets.UTF_8.newDecoder()
            .onMalformedInput(CodingErrorAction.REPLACE).onUnmappableCharacter(CodingErrorAction.REPLACE);
    private long dropped;      // characters trimmed from the front of text
    private long totalBytes;
    private long reads;        // reads that returned bytes, to see how often the reader wakes
    private boolean closed;
    private String closedReason;
    private SocketChannel channel;
    private Thread reader;
    private volatile boolean closing;
    /** The cursor of each thread that called {@link #await}; weak keys, so ended threads leave nothing behind. */
    private final Map<Thread, Cursor> threadCursors = new WeakHashMap<>(); // guarded by lock
    private final List<Watch> watches = new CopyOnWriteArrayList<>();

    /**
     * Held by the reader from appending a batch until every tee has it, and by whoever adds or replaces a tee:
     * a new tee starts exactly where the transcript stands, seeing nothing twice and missing nothing. Waiters
     * never take it, so a slow tee file does not delay them.
     */
    private final ReentrantLock teeLock = new ReentrantLock();
    private FileTee fileTee;                              // guarded by teeLock
    private boolean teesClosed;                           // guarded by teeLock
    private final List<LineTee> lineTees = new ArrayList<>(); // guarded by teeLock
    private final List<String> teeFailures = new CopyOnWriteArrayList<>();

    public Console(String name) {
        this(name, DEFAULT_RETAINED_CHARS);
    }

    public Console(String name, int retainedChars) {
        this.name = name;
        this.retainedChars = retainedChars;
    }

    /** Starts reading from a connected channel. */
    public void attach(SocketChannel ch) {
        lock.lock();
        try {
            if (channel != null) throw new IllegalStateException("console " + name + " is already attached");
            channel = ch;
        } finally {
            lock.unlock();
        }
        reader = Thread.ofVirtual().name("kiln-console-" + name).start(this::readLoop);
    }

    /**
     * Also writes everything from now on to {@code file} (appending), replacing an earlier tee file. A write
     * that fails is reported by {@link #teeFailure()} and ends this tee, not the console.
     */
    public Console teeTo(Path file) {
        FileChannel fc;
        try {
            fc = FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE, StandardOpenOption.APPEND);
        } catch (IOException e) {
            throw new KilnException("cannot open console tee file " + file + ": " + e.getMessage(), e);
        }
        FileTee old;
        teeLock.lock();
        try {
            if (teesClosed) {
                old = new FileTee(file, fc); // the console is closed: nothing more will come
            } else {
                old = fileTee;
                fileTee = new FileTee(file, fc);
            }
        } finally {
            teeLock.unlock();
        }
        if (old != null) old.close();
        return this;
    }

    /**
     * Hands {@code consumer} each complete line from now on, once, without its line end ({@code \n}, and any
     * {@code \r} before it), e.g. to a logger; a last line without a newline comes when the output ends. It
     * runs on the console's reader: keep it short. One that throws is reported by {@link #teeFailure()} and
     * called no more; the console goes on reading.
     */
    public Console teeLines(Consumer<String> consumer) {
        LineTee tee = new LineTee(consumer);
        teeLock.lock();
        try {
            if (!teesClosed) lineTees.add(tee);
        } finally {
            teeLock.unlock();
        }
        return this;
    }

    /** What went wrong with tees that failed and were dropped (one line each), if any did. */
    public Optional<String> teeFailure() {
        return teeFailures.isEmpty() ? Optional.empty() : Optional.of(String.join("\n", teeFailures));
    }

    private void readLoop() {
        ByteBuffer bytes = ByteBuffer.allocate(READ_BUFFER);
        CharBuffer chars = CharBuffer.allocate(READ_BUFFER);
        String reason = "the VM closed its console";
        try {
            while (true) {
                int n = channel.read(bytes); // appends after any partial UTF-8 sequence kept from before
                if (n < 0) break;
                boolean filled = !bytes.hasRemaining();
                bytes.flip();
                ByteBuffer raw = bytes.slice(bytes.limit() - n, n);
                StringBuilder fresh = new StringBuilder(n);
                while (true) {
                    chars.clear();
                    var r = decoder.decode(bytes, chars, false);
                    chars.flip();
                    fresh.append(chars);
                    if (!r.isOverflow()) break;
                }
                teeLock.lock();
                try {
                    append(n, fresh);
                    feedTees(raw, fresh);
                } finally {
                    teeLock.unlock();
                }
                bytes.compact();
                if (!filled && BATCH_NANOS > 0) Thread.sleep(Duration.ofNanos(BATCH_NANOS));
            }
        } catch (IOException e) {
            if (!closing) reason = "console read failed: " + e;
        } catch (InterruptedException e) {
            reason = "the console reader was interrupted";
        } finally {
            endTees();
            markClosed(closing ? "closed by Kiln" : reason);
            LOG.debug("console {}: {} bytes in {} reads", name, totalBytes(), readCount());
        }
    }

    /** Adds what was read to the transcript and wakes the waiters, before any tee sees it. */
    private void append(int n, CharSequence fresh) {
        lock.lock();
        try {
            totalBytes += n;
            reads++;
            long before = dropped + text.length();
            text.append(fresh);
            for (Watch w : watches) w.scan(before);
            trim();
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    /** Under teeLock, on the reader. */
    private void feedTees(ByteBuffer raw, CharSequence fresh) {
        if (fileTee != null) {
            try {
                while (raw.hasRemaining()) fileTee.channel.write(raw);
            } catch (IOException e) {
                teeFailed("writing the console tee file " + fileTee.file + " failed (" + e + ")", e);
                fileTee.close();
                fileTee = null;
            }
        }
        if (!lineTees.isEmpty() && !fresh.isEmpty()) lineTees.removeIf(t -> !t.feed(fresh));
    }

    /** On the reader, as the output ends: a last line without its newline is still a line. */
    private void endTees() {
        teeLock.lock();
        try {
            lineTees.removeIf(t -> !t.finish());
        } finally {
            teeLock.unlock();
        }
    }

    private void teeFailed(String what, Throwable cause) {
        String failure = what + "; no longer teeing there, still reading the console";
        teeFailures.add(failure);
        LOG.warn("console {}: {}", name, failure, cause);
    }

    /** Trims in batches of an eighth of the limit: deleting from the front of the text copies all of it. */
    private void trim() {
        int over = text.length() - retainedChars;
        if (over > retainedChars / 8) {
            text.delete(0, over);
            dropped += over;
        }
    }

    private void markClosed(String reason) {
        lock.lock();
        try {
            if (!closed) {
                closed = true;
                closedReason = reason;
                for (Watch w : watches) w.finish();
            }
            changed.signalAll();
        } finally {
            lock.unlock();
        }
    }

    private long readCount() {
        lock.lock();
        try {
            return reads;
        } finally {
            lock.unlock();
        }
    }

    /** Everything retained in memory (the last {@link #DEFAULT_RETAINED_CHARS} characters by default). */
    public String transcript() {
        lock.lock();
        try {
            return text.substring(Math.max(0, text.length() - retainedChars));
        } finally {
            lock.unlock();
        }
    }

    /** The last {@code chars} characters, for error messages. */
    public String tail(int chars) {
        lock.lock();
        try {
            return text.substring(Math.max(0, text.length() - chars));
        } finally {
            lock.unlock();
        }
    }

    /** Bytes read from the guest since the start. */
    public long totalBytes() {
        lock.lock();
        try {
            return totalBytes;
        } finally {
            lock.unlock();
        }
    }

    public boolean isOpen() {
        lock.lock();
        try {
            return channel != null && !closed;
        } finally {
            lock.unlock();
        }
    }

    /** A cursor at the current end of the output: it sees only what is printed from now on. */
    public Cursor cursor() {
        lock.lock();
        try {
            return new Cursor(dropped + text.length());
        } finally {
            lock.unlock();
        }
    }

    /** A cursor at the start of what is retained: it sees the transcript from its beginning. */
    public Cursor cursorAtStart() {
        lock.lock();
        try {
            return new Cursor(dropped);
        } finally {
            lock.unlock();
        }
    }

    /** {@link #await(Pattern, Duration)} for a literal text. */
    public MatchResult await(String literal, Duration timeout) {
        return threadCursor().await(literal, timeout);
    }

    /**
     * Waits until {@code pattern} matches output after the calling thread's cursor, moves that cursor past the
     * match and returns it. A thread's cursor starts at the beginning of the transcript on its first await; other
     * threads' cursors are unaffected (see the class comment). Fails with {@link WaitTimeoutException} (with the
     * console tail) on timeout, and at once when the console closes without a match.
     */
    public MatchResult await(Pattern pattern, Duration timeout) {
        return threadCursor().await(pattern, timeout);
    }

    private Cursor threadCursor() {
        lock.lock();
        try {
            return threadCursors.computeIfAbsent(Thread.currentThread(), t -> new Cursor(dropped));
        } finally {
            lock.unlock();
        }
    }

    /**
     * A place in the output that awaits search from; each match moves it past itself. Safe to use from any
     * thread, though two threads sharing one cursor take matches from each other, as with one expect session.
     */
    public final class Cursor {
        private long position; // absolute character offset; guarded by the console's lock

        private Cursor(long position) {
            this.position = position;
        }

        /** Waits for a literal text after this cursor; see {@link #await(Pattern, Duration)}. */
        public MatchResult await(String literal, Duration timeout) {
            return await(Pattern.compile(Pattern.quote(literal)), timeout);
        }

        /**
         * Waits until {@code pattern} matches output after this cursor, moves the cursor past the match and returns
         * it. Fails with {@link WaitTimeoutException} (with the console tail) on timeout, and with
         * {@link GuestException} at once when the console closes without a match.
         */
        public MatchResult await(Pattern pattern, Duration timeout) {
            Deadline deadline = Deadline.after(timeout);
            lock.lock();
            try {
                while (true) {
                    int from = (int) Math.max(0, position - dropped);
                    Matcher m = pattern.matcher(text);
                    if (m.find(from)) {
                        position = dropped + m.end();
                        return m.toMatchResult();
                    }
                    if (closed) {
                        throw new GuestException("console " + name + " closed (" + closedReason + ") before /"
                                + pattern.pattern() + "/ appeared" + earlier(m, from) + "; last output:\n"
                                + Text.tail(text.toString(), 2000));
                    }
                    long left = deadline.remainingNanos();
                    if (left <= 0) {
                        throw new WaitTimeoutException("/" + pattern.pattern() + "/ on console " + name
                                + earlier(m, from), timeout, text.substring(Math.max(0, text.length() - 2000)));
                    }
                    changed.awaitNanos(left);
                }
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KilnException("interrupted while waiting for console output", e);
            } finally {
                lock.unlock();
            }
        }

        /** Under the lock: a match before the cursor explains many a timeout. */
        private String earlier(Matcher m, int from) {
            m.region(0, from);
            return m.find() ? " (it appeared before the cursor: at character " + (dropped + m.start())
                    + ", the cursor is at " + position + ")" : "";
        }

        /** Where the cursor stands, in characters since the console started. */
        public long position() {
            lock.lock();
            try {
                return position;
            } finally {
                lock.unlock();
            }
        }
    }

    /**
     * Watches the output from now on for a literal, e.g. {@code "Kernel panic - not syncing"}; the watch
     * holds the first line it appeared in. Cheap: it searches only new output.
     */
    public Watch watch(String literal) {
        return watch(literal, () -> {});
    }

    /**
     * {@link #watch(String)}, running {@code onSeen} once the line with the literal is complete (or the output
     * ended). It runs on the console's reader, under its lock: keep it short and do not wait in it.
     */
    public Watch watch(String literal, Runnable onSeen) {
        Watch w = new Watch(literal, onSeen);
        lock.lock();
        try {
            w.searchedTo = dropped + text.length();
            watches.add(w);
        } finally {
            lock.unlock();
        }
        return w;
    }

    /** A literal looked for in the output; see {@link #watch}. */
    public final class Watch {
        private final String literal;
        private long searchedTo;          // absolute position; guarded by the console's lock
        private volatile long foundAt = -1;
        private final Runnable onSeen;
        private boolean notified; // guarded by the console's lock

        private Watch(String literal, Runnable onSeen) {
            this.literal = literal;
            this.onSeen = onSeen;
        }

        /** Called under the lock after new text was appended at absolute position {@code from}. */
        private void scan(long from) {
            if (foundAt < 0) {
                int start = (int) Math.max(0, Math.min(searchedTo, from) - literal.length() + 1 - dropped);
                int i = text.indexOf(literal, start);
                searchedTo = dropped + text.length();
                if (i >= 0) foundAt = dropped + i;
            }
            // Tell once the line is whole, so that line() has all of it.
            if (foundAt >= 0 && !notified) {
                int i = (int) (foundAt - dropped);
                if (i < 0 || text.indexOf("\n", i) >= 0) tell();
            }
        }

        /** Under the lock: the output ended; tell about a line that never got its newline. */
        private void finish() {
            if (foundAt >= 0 && !notified) tell();
        }

        private void tell() {
            notified = true;
            try {
                onSeen.run();
            } catch (RuntimeException e) {
                // The reader must go on reading, and a closing console must finish closing.
                LOG.warn("console {}: the action on seeing '{}' failed", name, literal, e);
            }
        }

        public boolean seen() { return foundAt >= 0; }

        /** The line the literal first appeared in (as far as it has arrived), if it appeared. */
        public Optional<String> line() {
            long at = foundAt;
            if (at < 0) return Optional.empty();
            lock.lock();
            try {
                int i = (int) (at - dropped);
                if (i < 0) return Optional.of(literal); // trimmed away since; the literal is what we know
                int begin = text.lastIndexOf("\n", i) + 1;
                int end = text.indexOf("\n", i);
                return Optional.of(text.substring(begin, end < 0 ? text.length() : end).strip());
            } finally {
                lock.unlock();
            }
        }
    }

    /** A file that receives the raw bytes. */
    private final class FileTee {
        final Path file;
        final FileChannel channel;

        FileTee(Path file, FileChannel channel) {
            this.file = file;
            this.channel = channel;
        }

        void close() {
            try {
                channel.close();
            } catch (IOException e) {
                LOG.debug("console {}: closing the tee file {} failed", name, file, e);
            }
        }
    }

    /** A consumer of whole lines; guarded by teeLock, used on the reader. */
    private final class LineTee {
        final Consumer<String> consumer;
        final StringBuilder partial = new StringBuilder();

        LineTee(Consumer<String> consumer) {
            this.consumer = consumer;
        }

        /** Hands over the lines {@code fresh} completes; false when the consumer failed and is dropped. */
        boolean feed(CharSequence fresh) {
            int start = 0;
            for (int i = 0; i < fresh.length(); i++) {
                if (fresh.charAt(i) != '\n') continue;
                partial.append(fresh, start, i);
                start = i + 1;
                if (!hand()) return false;
            }
            partial.append(fresh, start, fresh.length());
            return true;
        }

        boolean finish() {
            return partial.isEmpty() || hand();
        }

        private boolean hand() {
            int end = partial.length();
            while (end > 0 && partial.charAt(end - 1) == '\r') end--;
            String line = partial.substring(0, end);
            partial.setLength(0);
            try {
                consumer.accept(line);
                return true;
            } catch (VirtualMachineError e) {
                throw e;
            } catch (RuntimeException | Error e) {
                // A logger that throws must not stop the console that tests wait on.
                teeFailed("a line consumer (teeLines) threw " + e, e);
                return false;
            }
        }
    }

    /** Types text into the console as is (add "\n" to press enter). */
    public void send(String text) {
        send(text.getBytes(StandardCharsets.UTF_8));
    }

    /** Sends bytes to the console as they are (a terminal's keys, control characters included). */
    public void send(byte[] bytes) {
        SocketChannel ch;
        lock.lock();
        try {
            ch = channel;
            if (ch == null || closed) throw new KilnException("console " + name + " is not connected");
        } finally {
            lock.unlock();
        }
        ByteBuffer b = ByteBuffer.wrap(bytes);
        try {
            synchronized (ch) {
                while (b.hasRemaining()) ch.write(b);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write to console " + name, e);
        }
    }

    /**
     * Waits up to {@code timeout} for the output to end (the VMM closed its side), so that everything it wrote
     * is read; for use once the VMM has exited, before {@link #close()}.
     */
    public void awaitEnd(Duration timeout) {
        Thread r = reader;
        if (r == null) return;
        try {
            r.join(timeout);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /** Stops reading and closes the connection and the tee file; the transcript stays readable. */
    @Override
    public void close() {
        SocketChannel ch;
        lock.lock();
        try {
            ch = channel;
        } finally {
            lock.unlock();
        }
        closing = true;
        try {
            if (ch != null) ch.close();
        } catch (IOException ignored) {
            // closing: nothing left to do
        }
        if (reader != null) {
            try {
                reader.join(TimeUnit.SECONDS.toMillis(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        markClosed("closed by Kiln");
        FileTee t;
        teeLock.lock();
        try {
            t = fileTee;
            fileTee = null;
            teesClosed = true;
            lineTees.clear();
        } finally {
            teeLock.unlock();
        }
        if (t != null) t.close();
    }
}
