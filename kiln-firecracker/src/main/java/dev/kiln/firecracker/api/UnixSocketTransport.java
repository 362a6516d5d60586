package dev.kiln.firecracker.api;

import dev.kiln.KilnException;
import org.eclipse.jetty.client.BytesRequestContent;
import org.eclipse.jetty.client.ContentResponse;
import org.eclipse.jetty.client.HttpClient;
import org.eclipse.jetty.client.Request;
import org.eclipse.jetty.io.Transport;
import org.eclipse.jetty.util.thread.ScheduledExecutorScheduler;
import org.eclipse.jetty.util.thread.QueuedThreadPool;

import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * HTTP/1.1 to Firecracker's API socket with Jetty's client. Connections are kept alive and reused
 * (Firecracker answers {@code Connection: keep-alive}); Jetty's threads are daemon threads, so a
 * transport that is never closed does not hold the JVM up.
 */
public final class UnixSocketTransport implements ApiTransport {
    private final Path socket;
    private final HttpClient client;
    private final Transport transport;

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
        // One connection is enough for a synchronous API server and keeps requests in order.
        client.setMaxConnectionsPerDestination(1);
        try {
            client.start();
        } catch (Exception e) {
            throw new KilnException("cannot start the HTTP client for " + socket + ": " + e.getMessage(), e);
        }
    }

    @Override
    public Response exchange(String method, String path, byte[] jsonBody, Duration timeout) {
        Request request = client.newRequest("http://localhost" + path)
                .transport(transport)
                .method(method)
                .timeout(timeout.toMillis(), TimeUnit.MILLISECONDS);
        if (jsonBody != null) request.body(new BytesRequestContent("application/json", jsonBody));
        try {
            ContentResponse response = request.send();
            return new Response(response.getStatus(), response.getContent());
        } catch (TimeoutException e) {
            throw new FirecrackerUnreachableException("Firecracker did not answer " + method + " " + path + " within "
                    + timeout.toMillis() + " ms on " + socket, e);
        } catch (ExecutionException e) {
            Throwable cause = e.getCause() == null ? e : e.getCause();
            throw new FirecrackerUnreachableException("no answer from Firecracker to " + method + " " + path + " on "
                    + socket + ": " + cause, cause);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new FirecrackerUnreachableException("interrupted during " + method + " " + path, e);
        }
    }

    @Override
    public String describe() {
        return socket.toString();
    }

    @Override
    public void close() {
        try {
            client.stop();
        } catch (Exception e) {
            throw new KilnException("cannot stop the HTTP client for " + socket + ": " + e.getMessage(), e);
        }
    }
}
