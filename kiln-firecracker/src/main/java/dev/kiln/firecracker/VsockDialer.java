package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.Text;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * Host-side vsock for Firecracker, which proxies a guest's vsock over unix sockets. To reach guest port N,
 * connect to the device's {@code uds_path} and say {@code CONNECT N\n}; Firecracker answers
 * {@code OK <host port>\n} and the connection then carries the stream. A guest connecting to host port N
 * reaches whoever listens on {@code <uds_path>_N}.
 */
public final class VsockDialer {
    private static final int MAX_REPLY = 64;

    private VsockDialer() {}

    /** A connection to guest port {@code port}, handshake done; fails clearly (never hangs past {@code timeout}). */
    public static SocketChannel dial(Path udsPath, int port, Duration timeout) {
        if (port < 0) throw new IllegalArgumentException("vsock port must not be negative: " + port);
        SocketChannel ch;
        try {
            ch = SocketChannel.open(UnixDomainSocketAddress.of(udsPath));
        } catch (IOException e) {
            throw new KilnException("cannot connect to Firecracker's vsock socket " + udsPath + ": " + e.getMessage()
                    + " (is a vsock device configured with this uds_path?)", e);
        }
        CompletableFuture<String> reply = CompletableFuture.supplyAsync(() -> handshake(ch, port),
                r -> Thread.ofVirtual().name("kiln-vsock-dial-" + port).start(r));
        try {
            String line = reply.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
            if (!line.startsWith("OK ")) {
                throw new KilnException("Firecracker refused CONNECT " + port + " on " + udsPath + ": '" + line.strip() + "'");
            }
            return ch;
        } catch (TimeoutException e) {
            close(ch);
            throw new KilnException("no answer to CONNECT " + port + " on " + udsPath + " within " + Text.human(timeout)
                    + " (is the guest booted, with a listener on vsock port " + port + "?)", e);
        } catch (ExecutionException e) {
            close(ch);
            throw e.getCause() instanceof KilnException k ? k : new KilnException("vsock handshake failed: " + e.getCause(), e.getCause());
        } catch (InterruptedException e) {
            close(ch);
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while dialing vsock port " + port, e);
        } catch (RuntimeException e) {
            close(ch);
            throw e;
        }
    }

    /** Sends CONNECT and reads the reply line byte by byte, so no byte of the stream after it is consumed. */
    private static String handshake(SocketChannel ch, int port) {
        try {
            ByteBuffer out = ByteBuffer.wrap(("CONNECT " + port + "\n").getBytes(StandardCharsets.US_ASCII));
            while (out.hasRemaining()) ch.write(out);
            ByteBuffer one = ByteBuffer.allocate(1);
            StringBuilder line = new StringBuilder();
            while (line.length() < MAX_REPLY) {
                one.clear();
                if (ch.read(one) < 0) {
                    throw new KilnException("Firecracker closed the connection after CONNECT " + port
                            + (line.isEmpty() ? "" : " (it said '" + line + "')")
                            + ": nothing listens on that guest port, or the guest is not booted");
                }
                char c = (char) one.get(0);
                if (c == '\n') return line.toString();
                line.append(c);
            }
            throw new KilnException("Firecracker's answer to CONNECT " + port + " is not a line: '" + line + "…'");
        } catch (IOException e) {
            throw new KilnException("vsock handshake for port " + port + " failed: " + e.getMessage(), e);
        }
    }

    /**
     * Listens for connections the guest makes to host port {@code port}: on {@code <uds_path>_<port>}, which
     * Firecracker connects to. A stale socket file there is replaced.
     */
    public static ServerSocketChannel listen(Path udsPath, int port) {
        Path path = udsPath.resolveSibling(udsPath.getFileName() + "_" + port);
        try {
            Files.deleteIfExists(path);
            ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            server.bind(UnixDomainSocketAddress.of(path));
            return server;
        } catch (IOException e) {
            throw new KilnException("cannot listen on " + path + " for guest connections to port " + port + ": " + e.getMessage(), e);
        }
    }

    private static void close(SocketChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // closing after a failure
        }
    }
}
