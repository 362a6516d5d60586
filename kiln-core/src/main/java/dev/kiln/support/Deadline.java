package dev.kiln.support;

import java.time.Duration;

/** A point in time that waits count down to, so a chain of waits shares one timeout. */
public record Deadline(long nanoTime, Duration total) {
    public static Deadline after(Duration d) {
        return new Deadline(System.nanoTime() + d.toNanos(), d);
    }

    public Duration remaining() {
        return Duration.ofNanos(Math.max(0, nanoTime - System.nanoTime()));
    }

    public long remainingNanos() {
        return Math.max(0, nanoTime - System.nanoTime());
    }

    public boolean expired() {
        return System.nanoTime() - nanoTime >= 0;
    }
}
