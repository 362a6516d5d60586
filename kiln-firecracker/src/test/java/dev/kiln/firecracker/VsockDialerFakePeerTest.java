package dev.kiln.firecracker;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The vsock handshake against a fake Firecracker peer: a real one only answers with a booted guest (which
 * needs real KVM), so a unix socket server here speaks Firecracker's side of {@code CONNECT}/{@code OK}.
 */
class VsockDialerFakePeerTest {
    @TempDir
    Path tmp;

    /** Reads the CONNECT line, answers {@code reply} (null: hangs up), then echoes. */
    private CompletableFuture<String> fakePeer(ServerSocketChannel server, String reply) {
        return CompletableFuture.supplyAsync(() -> {
            try (SocketChannel ch = server.accept()) {
                StringBuilder line = new StringBuilder();
                ByteBuffer one = ByteBuffer.allocate(1);
                while (ch.read(one.clear()) > 0 && one.get(0) != '\n') line.append((char) one.get(0));
                if (reply == null) return line.toString();
                ch.write(ByteBuffer.wrap(reply.getBytes(StandardCharsets.US_ASCII)));
                ByteBuffer echo = ByteBuffer.allocate(64);
                int n = ch.read(echo);
                ch.write(echo.flip());
                return line + " / echoed " + n;
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }, r -> Thread.ofVirtual().start(r));
    }

    private ServerSocketChannel server(Path path) throws Exception {
        ServerSocketChannel s = ServerSocketChannel.open(StandardProtocolFamily.UNIX);
        s.bind(UnixDomainSocketAddress.of(path));
        return s;
    }

    @Test
    void connectsAndCarriesTheStream() throws Exception {
        Path uds = tmp.resolve("v.sock");
        try (ServerSocketChannel server = server(uds)) {
            CompletableFuture<String> peer = fakePeer(server, "OK 1073741824\nhello-from-guest-side? no: echo follows");
            try (SocketChannel ch = VsockDialer.dial(uds, 52, Duration.ofSeconds(5))) {
                // The bytes after the OK line are the stream's, not eaten by the handshake.
                ByteBuffer rest = ByteBuffer.allocate(64);
                ch.read(rest);
                assertThat(new String(rest.array(), 0, rest.position(), StandardCharsets.US_ASCII)).startsWith("hello-from-guest-side");
                ch.write(ByteBuffer.wrap("ping".getBytes(StandardCharsets.US_ASCII)));
                ByteBuffer back = ByteBuffer.allocate(4);
                while (back.hasRemaining()) ch.read(back);
                assertThat(new String(back.array(), StandardCharsets.US_ASCII)).isEqualTo("ping");
            }
            assertThat(peer.get()).startsWith("CONNECT 52 / echoed 4");
        }
    }

    @Test
    void aHangUpSaysNothingListens() throws Exception {
        Path uds = tmp.resolve("v.sock");
        try (ServerSocketChannel server = server(uds)) {
            fakePeer(server, null);
            assertThatThrownBy(() -> VsockDialer.dial(uds, 1234, Duration.ofSeconds(5))).isInstanceOf(KilnException.class)
                    .hasMessageContaining("closed the connection after CONNECT 1234");
        }
    }

    @Test
    void silenceTimesOut() throws Exception {
        Path uds = tmp.resolve("v.sock");
        try (ServerSocketChannel server = server(uds)) { // never accepts: the connection waits in the backlog, unanswered
            assertThat(server.isOpen()).isTrue();
            assertThatThrownBy(() -> VsockDialer.dial(uds, 7, Duration.ofMillis(300))).isInstanceOf(KilnException.class)
                    .hasMessageContaining("no answer to CONNECT 7");
        }
    }

    @Test
    void noSocketIsAClearError() {
        assertThatThrownBy(() -> VsockDialer.dial(tmp.resolve("none.sock"), 7, Duration.ofSeconds(1)))
                .hasMessageContaining("is a vsock device configured");
    }

    @Test
    void guestInitiatedConnectionsArriveOnUdsPathUnderscorePort() throws Exception {
        Path uds = tmp.resolve("v.sock");
        try (ServerSocketChannel listener = VsockDialer.listen(uds, 1024);
             SocketChannel fromGuest = SocketChannel.open(UnixDomainSocketAddress.of(tmp.resolve("v.sock_1024")));
             SocketChannel accepted = listener.accept()) {
            assertThat(accepted.isConnected()).isTrue();
            assertThat(fromGuest.isConnected()).isTrue();
        }
    }
}
