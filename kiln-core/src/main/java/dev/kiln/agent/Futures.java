package dev.kiln.agent;

import dev.kiln.GuestException;
import dev.kiln.support.Deadline;

import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** Waiting on the futures that guest processes complete. */
final class Futures {
    private Futures() {}

    /** The future's value, or null at the deadline; its failure rethrown as it is (or as a GuestException). */
    static <T> T await(CompletableFuture<T> f, Deadline deadline, String what) {
        try {
            return f.get(Math.max(1, deadline.remainingNanos()), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            return null;
        } catch (ExecutionException e) {
            throw e.getCause() instanceof RuntimeException r ? r : new GuestException(e.getCause().getMessage(), null, e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new GuestException("interrupted while waiting for " + what, null, e);
        }
    }
}
