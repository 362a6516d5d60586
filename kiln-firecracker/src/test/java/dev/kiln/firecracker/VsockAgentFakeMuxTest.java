package dev.kiln.firecracker;

import dev.kiln.ExecResult;
import dev.kiln.agent.QgaGuest;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

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
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Guest commands the way a Firecracker machine sends them — QGA through the vsock {@code CONNECT} handshake —
 * against the real qemu-guest-agent running on the host. Firecracker's vsock multiplexer is faked (a unix
 * socket server that answers {@code OK} and then relays bytes) because the real one needs a booted guest.
 */
class VsockAgentFakeMuxTest {
    private static final Path QEMU_GA = Path.of("/usr/sbin/qemu-ga");

    @TempDir
    Path tmp;

    @Test
    void execThroughTheHandshakeReachesTheAgent() throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(QEMU_GA), "needs qemu-guest-agent on the host (apt-get install qemu-guest-agent)");
        Path agentSocket = tmp.resolve("qga.sock");
        Files.createDirectories(tmp.resolve("state"));
        Process agent = new ProcessBuilder(QEMU_GA.toString(), "-m", "unix-listen", "-p", agentSocket.toString(),
                "-t", tmp.resolve("state").toString(), "-f", tmp.resolve("qga.pid").toString())
                .redirectErrorStream(true).redirectOutput(tmp.resolve("qga.log").toFile()).start();
        Path muxPath = tmp.resolve("v.sock");
        try (ServerSocketChannel mux = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            mux.bind(UnixDomainSocketAddress.of(muxPath));
            Thread muxThread = Thread.ofVirtual().start(() -> serve(mux, 1024, agentSocket));
            try (QgaGuest guest = new QgaGuest(() -> VsockDialer.dial(muxPath, 1024, Duration.ofSeconds(2)), () -> "", "fake-mux")) {
                guest.awaitReady(Duration.ofSeconds(20));
                ExecResult r = guest.exec("sh", "-c", "echo over-vsock; exit 3");
                assertThat(r.stdoutText()).isEqualTo("over-vsock\n");
                assertThat(r.exitCode()).isEqualTo(3);
            }
            muxThread.interrupt();
        } finally {
            agent.destroyForcibly();
            agent.waitFor(10, TimeUnit.SECONDS);
        }
    }

    /** Firecracker's side of the handshake for one port, then a byte relay to the agent's socket. */
    private static void serve(ServerSocketChannel mux, int port, Path agentSocket) {
        while (mux.isOpen()) {
            try {
                SocketChannel host = mux.accept();
                Thread.ofVirtual().start(() -> {
                    try (host) {
                        String line = readLine(host);
                        if (!line.equals("CONNECT " + port)) return; // Firecracker hangs up on an unknown port
                        try (SocketChannel guestSide = connectWithRetry(agentSocket)) {
                            host.write(ByteBuffer.wrap("OK 1073741824\n".getBytes(StandardCharsets.US_ASCII)));
                            Thread back = Thread.ofVirtual().start(() -> relay(guestSide, host));
                            relay(host, guestSide);
                            back.join(5000);
                        }
                    } catch (Exception ignored) {
                        // a connection ended
                    }
                });
            } catch (IOException closed) {
                return;
            }
        }
    }

    private static SocketChannel connectWithRetry(Path socket) throws Exception {
        for (int i = 0; ; i++) {
            try {
                return SocketChannel.open(UnixDomainSocketAddress.of(socket));
            } catch (IOException notYet) {
                if (i > 200) throw notYet;
                Thread.sleep(25);
            }
        }
    }

    private static String readLine(SocketChannel ch) throws IOException {
        StringBuilder b = new StringBuilder();
        ByteBuffer one = ByteBuffer.allocate(1);
        while (ch.read(one.clear()) > 0 && one.get(0) != '\n') b.append((char) one.get(0));
        return b.toString();
    }

    private static void relay(SocketChannel from, SocketChannel to) {
        ByteBuffer buf = ByteBuffer.allocate(8192);
        try {
            while (from.read(buf.clear()) >= 0) {
                buf.flip();
                while (buf.hasRemaining()) to.write(buf);
            }
            to.shutdownOutput();
        } catch (IOException ignored) {
            // one side closed
        }
    }
}
