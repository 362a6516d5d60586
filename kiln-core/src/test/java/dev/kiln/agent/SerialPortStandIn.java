package dev.kiln.agent;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Stands in for QEMU's end of a virtio-serial port whose guest side nobody has opened yet: it accepts the
 * host's connection at once, as QEMU's chardev socket does, and drops whatever the host writes, until the
 * guest "opens" the port ({@link #open}); from then on it relays both ways to a real agent. One connection.
 */
final class SerialPortStandIn implements AutoCloseable {
    private static final String SYNC = "guest-sync-delimited";

    private final Path socket;
    private final ServerSocketChannel server;
    private final AtomicInteger droppedSyncs = new AtomicInteger();
    private final List<Thread> pumps = new CopyOnWriteArrayList<>();
    private volatile SocketChannel host;
    private volatile SocketChannel agent;

    private SerialPortStandIn(Path socket, ServerSocketChannel server) {
        this.socket = socket;
        this.server = server;
    }

    static SerialPortStandIn listen(Path socket) throws IOException {
        ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        server.bind(UnixDomainSocketAddress.of(socket));
        SerialPortStandIn port = new SerialPortStandIn(socket, server);
        port.pumps.add(Thread.ofVirtual().name("port-accept").start(port::acceptAndForward));
        return port;
    }

    /** The host's side: a connection QgaGuest's connector hands over. */
    SocketChannel connect() {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot connect to " + socket, e);
        }
    }

    /** How many guest-sync-delimited requests were dropped while the port was not open. */
    int droppedSyncs() {
        return droppedSyncs.get();
    }

    /** The guest opens the port: from now on bytes go to the agent and its answers come back. */
    void open(SocketChannel toAgent) {
        agent = toAgent;
        pumps.add(Thread.ofVirtual().name("port-agent-to-host").start(() -> {
            ByteBuffer buf = ByteBuffer.allocate(64 << 10);
            try {
                while (agent.read(buf) >= 0) {
                    buf.flip();
                    while (buf.hasRemaining()) host.write(buf);
                    buf.clear();
                }
            } catch (IOException ended) {
                // closed by close(): the relay is over
            }
        }));
    }

    private void acceptAndForward() {
        ByteBuffer buf = ByteBuffer.allocate(64 << 10);
        try {
            host = server.accept();
            while (host.read(buf) >= 0) {
                buf.flip();
                SocketChannel to = agent;
                if (to == null) {
                    String dropped = StandardCharsets.ISO_8859_1.decode(buf).toString();
                    for (int i = dropped.indexOf(SYNC); i >= 0; i = dropped.indexOf(SYNC, i + 1)) droppedSyncs.incrementAndGet();
                } else {
                    while (buf.hasRemaining()) to.write(buf);
                }
                buf.clear();
            }
        } catch (IOException ended) {
            // closed by close(): the relay is over
        }
    }

    @Override
    public void close() throws Exception {
        server.close();
        for (SocketChannel ch : new SocketChannel[] {host, agent}) if (ch != null) ch.close();
        for (Thread t : pumps) {
            t.join(Duration.ofSeconds(5));
            if (t.isAlive()) throw new AssertionError(t + " still running after close");
        }
    }
}
