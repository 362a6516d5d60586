package dev.kiln;

import java.io.InputStream;
import java.io.OutputStream;
import java.time.Duration;
import java.util.OptionalInt;

/**
 * A process started in the guest with {@link Guest#start}: its pid, its standard streams while it runs, its exit.
 *
 * <p>Its stdout and stderr arrive as it writes them, byte for byte; each stream holds a bounded buffer, so a process
 * that writes faster than they are read is held back in the guest rather than filling the host's heap (read both, or
 * give the request callbacks). Its stdin is open until {@link #stdin()} is closed (a request's fixed stdin bytes are
 * written and closed for you).
 *
 * <p>{@link #close()} kills it and everything it started when it is still running, so a daemon started here never
 * outlives its handle; the machine's close ends it too.
 */
public interface GuestProcess extends AutoCloseable {
    /** Its pid in the guest. */
    long pid();

    /** The command it runs. */
    java.util.List<String> argv();

    /** Its standard output as it writes it; ends once it (and whatever it started) closed it. */
    InputStream stdout();

    /** Its standard error as it writes it. */
    InputStream stderr();

    /** Its standard input; closing it gives the process end of file. */
    OutputStream stdin();

    /** Whether it is still running. */
    boolean isAlive();

    /** Its exit code once it exited (128 + n when signal n killed it), else empty. */
    OptionalInt exitCode();

    /**
     * Waits until it exited and its stdout and stderr ended, and returns its exit code. Throws
     * {@link WaitTimeoutException} (leaving it running) when that takes longer than {@code timeout}.
     */
    int waitFor(Duration timeout);

    /** Sends signal {@code signal} (e.g. 15, SIGTERM) to it alone; a process that already exited is left alone. */
    void signal(int signal);

    /** Kills it and everything it started (SIGKILL, stopped first so that nothing can fork away). */
    void kill();

    /** Kills it (and what it started) if it still runs, and releases its streams. */
    @Override
    void close();
}
