package dev.kiln.firecracker.api;

import java.time.Duration;

/**
 * Carries one HTTP exchange to Firecracker's API. The real one is {@link UnixSocketTransport}; tests put a
 * recording one in its place to check every request against the spec without a Firecracker.
 */
public interface ApiTransport extends AutoCloseable {
    /**
     * Sends {@code method path} with {@code jsonBody} (null: no body) and returns the answer.
     *
     * @throws FirecrackerUnreachableException when there is no answer (no socket, connection reset, timeout)
     */
    Response exchange(String method, String path, byte[] jsonBody, Duration timeout);

    /** A human-readable name of where requests go, for messages. */
    String describe();

    @Override
    void close();

    /** An HTTP answer: the status and the raw body (empty when there is none). */
    record Response(int status, byte[] body) {}
}
