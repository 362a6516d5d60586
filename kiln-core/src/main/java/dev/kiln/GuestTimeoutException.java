package dev.kiln;

import java.time.Duration;

/** A wait on the guest ran out of time. Says what was awaited, for how long, and what was last seen. */
public class GuestTimeoutException extends KilnException {
    private final String awaited;
    private final String seen;

    public GuestTimeoutException(String awaited, Duration timeout, String seen) {
        super("timed out after " + Text.human(timeout) + " waiting for " + awaited
                + (seen == null || seen.isBlank() ? "" : "\n  last seen:\n    "
                        + Text.tail(seen, 2000).strip().replace("\n", "\n    ")));
        this.awaited = awaited;
        this.seen = seen == null ? "" : seen;
    }

    public String awaited() { return awaited; }

    /** What was seen while waiting: usually the console tail. */
    public String seen() { return seen; }
}
