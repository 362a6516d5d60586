package dev.kiln;

import java.time.Duration;

/**
 * A wait ran out of time: for the guest, its agent, a console line, a VMM log line, a readiness probe or the VMM
 * itself. Says what was awaited, for how long, and what was last seen.
 */
public class WaitTimeoutException extends KilnException {
    private final String awaited;
    private final Duration timeout;
    private final String seen;

    public WaitTimeoutException(String awaited, Duration timeout, String seen) {
        this(awaited, timeout, seen, null);
    }

    public WaitTimeoutException(String awaited, Duration timeout, String seen, Throwable cause) {
        super("timed out after " + Text.human(timeout) + " waiting for " + awaited
                + (seen == null || seen.isBlank() ? "" : "\n  last seen:\n    "
                        + Text.tail(seen, 2000).strip().replace("\n", "\n    ")), cause);
        this.awaited = awaited;
        this.timeout = timeout;
        this.seen = seen == null ? "" : seen;
    }

    /** What was awaited, e.g. {@code /login:/ on console vm-1}. */
    public String awaited() { return awaited; }

    /** How long it was awaited. */
    public Duration timeout() { return timeout; }

    /** What was seen while waiting: the console's tail, the last probe result, the VMM's log. */
    public String seen() { return seen; }
}
