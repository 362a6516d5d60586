package dev.kiln.firecracker.api;

import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
import dev.kiln.support.Deadline;
import org.eclipse.jetty.client.BufferingResponseListener;
import org.eclipse.jetty.client.BytesRequestContent;
import org.eclipse.jetty.client.Connection;
import org.eclipse.jetty.client.HttpClient;
import org.eclipse.jetty.client.Request;
import org.eclipse.jetty.client.Result;
import org.eclipse.jetty.http.HttpHeader;
import org.eclipse.jetty.http.HttpHeaderValue;
import org.eclipse.jetty.io.Transport;
import org.eclipse.jetty.util.Promise;
import org.eclipse.jetty.util.thread.QueuedThreadPool;
import org.eclipse.jetty.util.thread.ScheduledExecutorScheduler;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CancellationException;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.locks.ReentrantLock;

/**
 * HTTP/1.1 to Firecracker's API socket with Jetty's client, over one kept-alive connection that this transport
 * owns (not Jetty's pool), so that it alone decides when a connection can no longer be trusted. Exchanges take
 * turns on it: Firecracker's API server answers one request at a time anyway.
 *
 * <p>A request with a body is sent with {@code Expect: 100-continue}, and the body only once Firecracker has
 * agreed to read it. Firecracker checks the body's size against {@code --http-api-max-payload-size} as soon as it
 * has the headers; without the wait it answers 400 at once and then parses the unread body as further requests,
 * answering each. That flood of stray answers would be taken for the answers to later requests, and a client that
 * closes the connection while Firecracker is still writing them can kill it (SIGPIPE, then SIGSYS from its seccomp
 * filter: seen with v1.7.0 and v1.14.2 a few times in a hundred). The wait costs one round trip on the socket.
 *
 * <p>The connection is dropped, and the next exchange opens a fresh one, after
 * <ul>
 *   <li>any failure: a timeout, an abort, a broken or reset connection. A late answer to a timed-out request
 *       would otherwise be read as the answer to the next one;</li>
 *   <li>any 4xx or 5xx answer. Once Firecracker's HTTP parser has refused a body over the limit, its side of the
 *       connection stays broken: it answers every later request on it with 400 "Invalid header". From the status
 *       alone such a 400 cannot be told from an endpoint's 400, and error answers are rare, so a fresh connection
 *       after every one costs little and never trusts a parser that has just reported an error.</li>
 * </ul>
 *
 * <p>{@link #close(String)} aborts the exchange under way at once and makes every later one fail at once, both
 * with {@link MachineClosedException}. Jetty's threads are daemon threads, so a transport that is never closed
 * does not hold the JVM up.
 */
public final class UnixSocketTransport implements ApiTransport {
    /** Larger than any answer Firecracker gives (the biggest is an MMDS store of at most the payload limit). */
    private static final int MAX_ANSWER_BYTES = 64 * 1024 * 1024;

    private final Path socket;
    private final HttpClient client;
    private final Transport transport;
    /** Held for a whole exchange: one request at a time on the one connection. */
    private final ReentrantLock turn = new ReentrantLock();
    /** The kept-alive connection, or null when the next exchange must open a fresh one. Guarded by {@link #turn}. */
    private Connection connection;
    /** Why this transport was closed; null while it is open. */
    private volatile String closedReason;
    /** The request under way, so that close() can abort it. */
    private volatile Request current;
    /** A connection being opened, so that close() can give up on it. */
    private volatile CompletableFuture<Connection> connecting;

    public UnixSocketTransport(Path socket) {
        this.socket = socket;
        this.transport = new Transport.TCPUnix(socket);
        this.client = new HttpClient();
        client.setName("kiln-firecracker-api");
        // Platform daemon threads: Jetty's selector blocks in epoll_wait, which would hold a virtual thread's carrier.
        QueuedThreadPool threads = new QueuedThreadPool(8, 1);
        threads.setName("kiln-firecracker-api");
        threads.setDaemon(true);
        threads.setIdleTimeout(5000);
        client.setExecutor(threads);
        client.setScheduler(new ScheduledExecutorScheduler("kiln-firecracker-api-scheduler", true));
        client.setFollowRedirects(false);
        client.setUserAgentField(null); // Firecracker ignores it; keeps its debug log lines short
        // No idle timeout: Firecracker never closes an idle connection, and an idle timeout racing a request about
        // to be sent would fail that request. Each exchange has its own total timeout.
        client.setIdleTimeout(0);
        try {
            client.start();
        } catch (Exception e) {
            throw new KilnException("cannot start the HTTP client for " + socket + ": " + e.getMessage(), e);
        }
    }

    @Override
    public Response exchange(String method, String path, byte[] jsonBody, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        refuseIfClosed(method, path);
        try {
            if (!turn.tryLock(deadline.remainingNanos(), TimeUnit.NANOSECONDS)) {
                throw new FirecrackerUnreachableException("Firecracker did not answer " + method + " " + path + " within "
                        + timeout.toMillis() + " ms on " + socket + ": the calls before it held the connection that long", null);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new FirecrackerUnreachableException("interrupted while waiting to send " + method + " " + path, e);
        }
        try {
            refuseIfClosed(method, path);
            Connection c = connection(method, path, deadline, timeout);
            boolean keep = false;
            try {
                Response response = send(c, method, path, jsonBody, deadline, timeout);
                keep = response.status() < 400;
                return response;
            } finally {
                if (!keep) drop();
            }
        } finally {
            turn.unlock();
        }
    }

    private Response send(Connection c, String method, String path, byte[] jsonBody, Deadline deadline, Duration timeout) {
        Request request = client.newRequest("http://localhost" + path).transport(transport).method(method);
        if (jsonBody != null) {
            request.body(new BytesRequestContent("application/json", jsonBody));
            request.headers(h -> h.put(HttpHeader.EXPECT, HttpHeaderValue.CONTINUE.asString()));
        }
        AnswerListener listener = new AnswerListener();
        current = request;
        try {
            // Checked after publishing the request: either close() sees it and aborts it, or this sees close().
            if (closedReason != null) throw closed(method, path, true);
            try {
                c.send(request, listener);
            } catch (RuntimeException e) { // the client was stopped by close() just now
                listener.answer.completeExceptionally(e);
            }
            return listener.answer.get(deadline.remainingNanos(), TimeUnit.NANOSECONDS);
        } catch (TimeoutException e) {
            request.abort(e);
            throw new FirecrackerUnreachableException("Firecracker did not answer " + method + " " + path + " within "
                    + timeout.toMillis() + " ms on " + socket, e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            if (closedReason != null) throw closed(method, path, true, cause);
            throw new FirecrackerUnreachableException("no answer from Firecracker to " + method + " " + path + " on "
                    + socket + ": " + cause, cause);
        } catch (InterruptedException e) {
            request.abort(e);
            Thread.currentThread().interrupt();
            throw new FirecrackerUnreachableException("interrupted during " + method + " " + path, e);
        } finally {
            current = null;
        }
    }

    /** Collects the answer. */
    private static final class AnswerListener extends BufferingResponseListener {
        final CompletableFuture<Response> answer = new CompletableFuture<>();

        AnswerListener() {
            super(MAX_ANSWER_BYTES);
        }

        @Override
        public void onComplete(Result result) {
            // A refused "Expect: 100-continue" fails the request (its body was never sent) but the answer is complete.
            if (result.getResponseFailure() == null) {
                answer.complete(new Response(result.getResponse().getStatus(), getContent()));
            } else {
                answer.completeExceptionally(result.getFailure());
            }
        }
    }

    /** The kept connection, or a fresh one. */
    private Connection connection(String method, String path, Deadline deadline, Duration timeout) {
        if (connection != null && !connection.isClosed()) return connection;
        connection = null;
        CompletableFuture<Connection> opened = new CompletableFuture<>();
        connecting = opened;
        try {
            if (closedReason != null) throw closed(method, path, false);
            Request probe = client.newRequest("http://localhost/").transport(transport);
            try {
                // A connection that arrives after this exchange gave up on it is closed at once rather than leaked.
                client.resolveDestination(probe).newConnection(Promise.from(c -> {
                    if (!opened.complete(c)) c.close();
                }, opened::completeExceptionally));
            } catch (RuntimeException e) { // the client was stopped by close() just now
                opened.completeExceptionally(e);
            }
            connection = opened.get(deadline.remainingNanos(), TimeUnit.NANOSECONDS);
            return connection;
        } catch (TimeoutException e) {
            opened.cancel(false);
            throw new FirecrackerUnreachableException("cannot connect to Firecracker's API socket " + socket
                    + " to send " + method + " " + path + " within " + timeout.toMillis() + " ms", e);
        } catch (ExecutionException | CancellationException e) {
            if (closedReason != null) throw closed(method, path, false, e);
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new FirecrackerUnreachableException("cannot connect to Firecracker's API socket " + socket
                    + " to send " + method + " " + path + ": " + cause, cause);
        } catch (InterruptedException e) {
            opened.cancel(false);
            Thread.currentThread().interrupt();
            throw new FirecrackerUnreachableException("interrupted while connecting to " + socket, e);
        } finally {
            connecting = null;
        }
    }

    private void drop() {
        Connection c = connection;
        connection = null;
        if (c != null) c.close();
    }

    private void refuseIfClosed(String method, String path) {
        if (closedReason != null) throw closed(method, path, false);
    }

    private MachineClosedException closed(String method, String path, boolean underWay) {
        return closed(method, path, underWay, null);
    }

    private MachineClosedException closed(String method, String path, boolean underWay, Throwable cause) {
        String what = underWay ? method + " " + path + " to Firecracker was cut short: " : "cannot send " + method + " " + path + " to Firecracker: ";
        return new MachineClosedException(what + closedReason, cause);
    }

    @Override
    public String describe() {
        return socket.toString();
    }

    @Override
    public void close() {
        close(DEFAULT_CLOSE_REASON);
    }

    @Override
    public void close(String reason) {
        synchronized (this) {
            if (closedReason != null) return;
            closedReason = reason;
        }
        MachineClosedException cause = new MachineClosedException(reason);
        Request request = current;
        if (request != null) request.abort(cause);
        CompletableFuture<Connection> opening = connecting;
        if (opening != null) opening.completeExceptionally(cause);
        try {
            // Closes the kept connection too; the exchange under way, if any, has already failed.
            client.stop();
        } catch (Exception e) {
            throw new KilnException("cannot stop the HTTP client for " + socket + ": " + e.getMessage(), e);
        }
    }
}
