package dev.kiln.qemu;

import dev.kiln.Event;
import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.nio.ByteBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/**
 * The QMP client against a fake QEMU peer (a socket the test drives by hand), for what no real QEMU sends on
 * purpose: garbage, a close in the middle of a reply, silence.
 */
class QmpProtocolTest {
    private static final String GREETING = "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}, \"capabilities\": []}}\r\n";

    private record Pair(SocketChannel kiln, SocketChannel fake) implements AutoCloseable {
        static Pair open() throws IOException {
            var server = java.nio.channels.ServerSocketChannel.open(StandardProtocolFamily.UNIX);
            var path = java.nio.file.Files.createTempDirectory("kiln-qmp-fake").resolve("s");
            server.bind(java.net.UnixDomainSocketAddress.of(path));
            SocketChannel a = SocketChannel.open(java.net.UnixDomainSocketAddress.of(path));
            SocketChannel b = server.accept();
            server.close();
            java.nio.file.Files.delete(path);
            java.nio.file.Files.delete(path.getParent());
            return new Pair(a, b);
        }

        void say(String s) throws IOException {
            // one write may take only part: the JDK makes a socket non-blocking once a virtual thread used it
            ByteBuffer b = ByteBuffer.wrap(s.getBytes(StandardCharsets.UTF_8));
            while (b.hasRemaining()) fake.write(b);
        }

        String hear() throws IOException {
            ByteBuffer b = ByteBuffer.allocate(4096);
            fake.read(b);
            return new String(b.array(), 0, b.position(), StandardCharsets.UTF_8);
        }

        @Override
        public void close() throws IOException {
            kiln.close();
            fake.close();
        }
    }

    /** Greets and answers qmp_capabilities, as QEMU does, on a background thread. */
    private static Qmp handshake(Pair p) throws Exception {
        Thread t = Thread.ofVirtual().start(() -> {
            try {
                p.say(GREETING);
                String cmd = p.hear();
                String id = cmd.replaceAll(".*\"id\":\"(\\d+)\".*", "$1").strip();
                p.say("{\"return\": {}, \"id\": \"" + id + "\"}\r\n");
            } catch (IOException e) {
                throw new RuntimeException(e);
            }
        });
        Qmp qmp = Qmp.connect("fake", p.kiln(), Duration.ofSeconds(5));
        t.join();
        return qmp;
    }

    private static String event(String name, int n) {
        return "{\"event\": \"" + name + "\", \"data\": {\"n\": " + n + "}, \"timestamp\": {\"seconds\": 1, \"microseconds\": " + n + "}}\r\n";
    }

    /** Answers the next command with an empty return, on a background thread. */
    private static Thread answerNextCommand(Pair p) {
        return Thread.ofVirtual().start(() -> {
            try {
                p.hear();
                p.say("{\"return\": {}}\r\n");
            } catch (IOException e) {
                throw new java.io.UncheckedIOException(e);
            }
        });
    }

    /**
     * A flood no real QEMU sends on demand: thousands of events at once, more than the queue holds, with the
     * one a wait wants in the middle. The wait gets it although the queue overflows after it arrived.
     */
    @Test
    void aWaitGetsItsEventWhileAFloodOverflowsTheQueue() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            int before = Qmp.EVENT_QUEUE_CAPACITY + 500;
            int after = Qmp.EVENT_QUEUE_CAPACITY + 500;
            CompletableFuture<Event> got = new CompletableFuture<>();
            Thread waiter = Thread.ofVirtual().start(() -> {
                try {
                    got.complete(qmp.awaitEvent("TARGET", null, Duration.ofSeconds(30)));
                } catch (Throwable t) {
                    got.completeExceptionally(t);
                }
            });
            assertThat(qmp.eventQueue().awaitWaiters(1, Duration.ofSeconds(10))).as("the wait is under way").isTrue();

            StringBuilder flood = new StringBuilder();
            for (int i = 0; i < before; i++) flood.append(event("NOISE", i));
            flood.append(event("TARGET", before));
            for (int i = 0; i < after; i++) flood.append(event("NOISE", before + 1 + i));
            p.say(flood.toString());

            Event target = got.get(10, TimeUnit.SECONDS);
            assertThat(target.name()).isEqualTo("TARGET");
            assertThat(target.data()).containsEntry("n", (long) before);
            waiter.join();

            // a reply after the flood: once it is in, every event before it is too
            Thread answer = answerNextCommand(p);
            qmp.execute("query-status", null, Duration.ofSeconds(10));
            answer.join();
            List<Event> queued = qmp.peekEvents();
            assertThat(queued).hasSize(Qmp.EVENT_QUEUE_CAPACITY).allMatch(e -> e.name().equals("NOISE"));
            assertThat(queued.getLast().data()).containsEntry("n", (long) before + after);
            assertThat(qmp.droppedEvents()).isEqualTo(before + after - Qmp.EVENT_QUEUE_CAPACITY);
            qmp.close();
        }
    }

    @Test
    void garbageClosesTheConnectionAndFailsTheCommandInFlight() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            Thread.ofVirtual().start(() -> {
                try {
                    p.hear();
                    p.say("this is not json\n");
                } catch (IOException ignored) {
                    // the test fails on the assertion below if this did not happen
                }
            });
            assertTimeoutPreemptively(Duration.ofSeconds(10), () ->
                    assertThatThrownBy(() -> qmp.execute("query-status"))
                            .isInstanceOf(QmpException.class).hasMessageContaining("garbage"));
            assertThat(qmp.state()).isEqualTo(Qmp.State.CLOSED);
            assertThat(qmp.closeReason()).contains("garbage");
        }
    }

    @Test
    void closeInTheMiddleOfAReplyIsNamed() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            Thread.ofVirtual().start(() -> {
                try {
                    p.hear();
                    p.say("{\"return\": {\"status\": \"runn");
                    p.fake().close();
                } catch (IOException ignored) {
                    // asserted below
                }
            });
            assertTimeoutPreemptively(Duration.ofSeconds(10), () ->
                    assertThatThrownBy(() -> qmp.execute("query-status"))
                            .isInstanceOf(QmpException.class).hasMessageContaining("middle of a message"));
            assertThatThrownBy(() -> qmp.awaitEvent("STOP", null, Duration.ofSeconds(5)))
                    .isInstanceOf(KilnException.class).hasMessageContaining("closed");
        }
    }

    @Test
    void silentPeerTimesOutTheGreeting() throws Exception {
        try (Pair p = Pair.open()) {
            assertTimeoutPreemptively(Duration.ofSeconds(10), () ->
                    assertThatThrownBy(() -> Qmp.connect("fake", p.kiln(), Duration.ofMillis(300)))
                            .hasMessageContaining("QMP greeting"));
        }
    }

    @Test
    void unansweredCommandTimesOut() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            assertThatThrownBy(() -> qmp.execute("query-status", null, Duration.ofMillis(200)))
                    .isInstanceOf(QmpException.class).hasMessageContaining("no reply within");
            qmp.close();
        }
    }
}
