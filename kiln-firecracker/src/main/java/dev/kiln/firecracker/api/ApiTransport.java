package dev.kiln.firecracker.api;

import java.time.Duration;

/**
 * Carries one HTTP exchange to Firecracker's API. The real one is {@link UnixSocketTransport}; tests put a
 * recording one in its place to check every request against the spec without a Firecracker.
 */
public interface ApiTransport extends AutoCloseable {
    /** The reason {@link #close()} gives. */
    String DEFAULT_CLOSE_REASON = "the API client was closed";

    /**
     * Sends {@code method path} with {@code jsonBody} (null: no body) and returns the answer.
     *
     * @throws FirecrackerUnreachableException when there is no answer (no socket, connection reset, timeout)
     * @throws dev.kiln.MachineClosedException when the transport is closed, or was closed while waiting for the answer
     */
    Response exchange(String method, String path, byte[] jsonBody, Duration timeout);

    /** A human-readable name of where requests go, for messages. */
    String describe();

    /** {@link #close(String)} with {@link #DEFAULT_CLOSE_REASON}. */
    @Override
    void close();

    /**
     * Ends the exchange under way, if any, at once and refuses every later one, both with a
     * {@link dev.kiln.MachineClosedException} whose message carries {@code reason}. Only the first close counts.
     */
    default void close(String reason) {
        close();
    }

    /** An HTTP answer: the status and the raw body (empty when there is none). */
    record Response(int status, byte[] body) {}
}
