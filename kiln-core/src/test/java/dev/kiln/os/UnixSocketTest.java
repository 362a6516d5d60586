package dev.kiln.os;

import dev.kiln.KilnException;
import dev.kiln.os.UnixSocket.Received;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

import static dev.kiln.os.OsTestSupport.TIMEOUT;
import static dev.kiln.os.OsTestSupport.cloexec;
import static dev.kiln.os.OsTestSupport.readAll;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

@ExtendWith(NoOsLeaks.class)
class UnixSocketTest {
    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    @Test
    void passesADescriptorOverASocketPair() throws Exception {
        Fd[] pair = Posix.socketPair();
        Fd[] pipe = Posix.pipe();
        try (Fd a = pair[0]; Fd b = pair[1]; Fd pipeIn = pipe[0]) {
            try (Fd pipeOut = pipe[1]) {
                UnixSocket.sendWithFds(a, bytes("fd"), pipeOut);
            }
            Received received = assertTimeoutPreemptively(TIMEOUT, () -> UnixSocket.receiveWithFds(b, 16, 4));
            assertThat(new String(received.data(), StandardCharsets.UTF_8)).isEqualTo("fd");
            assertThat(received.fds()).hasSize(1);
            try (Fd passed = received.fds().getFirst()) {
                assertThat(cloexec(passed)).isTrue();
                Posix.writeFully(passed, bytes("through the passed fd"), 0, 21);
            }
            assertThat(readAll(pipeIn)).isEqualTo("through the passed fd");
        }
    }

    @Test
    @SuppressWarnings("try") // closes one end early to observe end of stream
    void receivesSeveralDescriptorsAndPlainBytesAndEndOfStream() {
        Fd[] pair = Posix.socketPair();
        Fd[] p1 = Posix.pipe(), p2 = Posix.pipe();
        try (Fd a = pair[0]; Fd b = pair[1]) {
            UnixSocket.sendWithFds(a, bytes("two"), p1[1], p2[0]);
            Received two = UnixSocket.receiveWithFds(b, 16, 2);
            assertThat(two.fds()).hasSize(2);
            two.fds().forEach(Fd::close);

            UnixSocket.sendWithFds(a, bytes("none"));
            Received none = UnixSocket.receiveWithFds(b, 16, 2);
            assertThat(none.data()).asString(StandardCharsets.UTF_8).isEqualTo("none");
            assertThat(none.fds()).isEmpty();

            UnixSocket.sendWithFds(a, bytes("x"), p1[0], p1[1], p2[1]);
            assertThatThrownBy(() -> UnixSocket.receiveWithFds(b, 16, 1))
                    .isInstanceOf(KilnException.class).hasMessageContaining("more than 1 descriptors");

            a.close();
            assertThat(UnixSocket.receiveWithFds(b, 16, 2).endOfStream()).isTrue();
        } finally {
            for (Fd fd : new Fd[] {p1[0], p1[1], p2[0], p2[1]}) fd.close();
        }
    }

    @Test
    void connectsToAJdkServerAndSendsBytesWithAnFd(@TempDir Path dir) throws Exception {
        Path path = dir.resolve("api.sock");
        Fd[] pipe = Posix.pipe();
        pipe[0].close();
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX); Fd out = pipe[1]) {
            server.bind(UnixDomainSocketAddress.of(path));
            try (Fd client = UnixSocket.connect(path);
                 SocketChannel accepted = assertTimeoutPreemptively(TIMEOUT, () -> server.accept())) {
                assertThat(cloexec(client)).isTrue();
                // The JDK cannot receive descriptors (the kernel drops them on its side); the bytes still arrive.
                UnixSocket.sendWithFds(client, bytes("hello"), out);
                ByteBuffer buffer = ByteBuffer.allocate(5);
                assertTimeoutPreemptively(TIMEOUT, () -> {
                    while (buffer.hasRemaining()) assertThat(accepted.read(buffer)).isPositive();
                });
                assertThat(new String(buffer.array(), StandardCharsets.UTF_8)).isEqualTo("hello");
            }
        }
    }

    @Test
    void connectFailuresNameThePath(@TempDir Path dir) {
        Path missing = dir.resolve("missing.sock");
        assertThatThrownBy(() -> UnixSocket.connect(missing))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("connect(" + missing + ")")
                .hasMessageContaining("ENOENT");
        Path tooLong = dir.resolve("x".repeat(120));
        assertThatThrownBy(() -> UnixSocket.connect(tooLong))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining(tooLong.toString())
                .hasMessageContaining("107");
    }
}
