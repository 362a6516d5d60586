package dev.kiln.qemu;

import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.MachineClosedException;
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

    /** Reads what Kiln sends until {@code n} commands have come: they are in flight then. */
    private static void hearCommands(Pair p, int n) throws IOException {
        StringBuilder heard = new StringBuilder();
        while (heard.toString().split("\"execute\"", -1).length - 1 < n) heard.append(p.hear());
    }

    /** Runs {@code action} on a thread of its own; completes with what it threw, or fails if it returned. */
    private static CompletableFuture<Throwable> failureOf(Runnable action) {
        CompletableFuture<Throwable> failure = new CompletableFuture<>();
        Thread.ofVirtual().start(() -> {
            try {
                action.run();
                failure.completeExceptionally(new AssertionError("returned instead of failing"));
            } catch (Throwable t) {
                failure.complete(t);
            }
        });
        return failure;
    }

    /**
     * A peer that never answers, so that commands stay in flight (one reading, one waiting for the lead) and a
     * wait stays under way until Kiln closes the connection. Their own timeouts are ten minutes: they fail
     * within the test's seconds only because of the close.
     */
    @Test
    void closedByKilnFailsWhatIsUnderWayAndWhatComesLaterWithMachineClosed() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            Duration never = Duration.ofMinutes(10);
            var first = failureOf(() -> qmp.execute("query-status", null, never));
            var second = failureOf(() -> qmp.execute("query-name", null, never));
            var wait = failureOf(() -> qmp.awaitEvent("SHUTDOWN", null, never));
            hearCommands(p, 2);
            assertThat(qmp.eventQueue().awaitWaiters(1, Duration.ofSeconds(10))).as("the wait is under way").isTrue();

            qmp.close("the test is over");

            assertThat(first.get(10, TimeUnit.SECONDS)).isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("query-status").hasMessageContaining("the test is over");
            assertThat(second.get(10, TimeUnit.SECONDS)).isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("query-name").hasMessageContaining("the test is over");
            assertThat(wait.get(10, TimeUnit.SECONDS)).isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("SHUTDOWN").hasMessageContaining("the test is over");
            assertThatThrownBy(() -> qmp.execute("query-status", null, never))
                    .isInstanceOf(MachineClosedException.class).hasMessageContaining("the test is over");
            assertThatThrownBy(() -> qmp.awaitEvent("SHUTDOWN", null, never))
                    .isInstanceOf(MachineClosedException.class).hasMessageContaining("the test is over");
            assertThat(qmp.state()).isEqualTo(Qmp.State.CLOSED);
            assertThat(qmp.closedByKiln()).isTrue();
            assertThat(qmp.onClose()).isDone();
            qmp.close("a second close");
            assertThat(qmp.closeReason()).isEqualTo("the test is over");
        }
    }

    @Test
    void lostFromQemusSideFailsWhatIsUnderWayAsAQmpFailureNotAsClosedByKiln() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            Duration never = Duration.ofMinutes(10);
            var command = failureOf(() -> qmp.execute("query-status", null, never));
            var wait = failureOf(() -> qmp.awaitEvent("SHUTDOWN", null, never));
            hearCommands(p, 1);
            assertThat(qmp.eventQueue().awaitWaiters(1, Duration.ofSeconds(10))).as("the wait is under way").isTrue();

            p.fake().close();

            assertThat(command.get(10, TimeUnit.SECONDS)).isInstanceOf(QmpException.class)
                    .hasMessageContaining("QEMU closed the QMP connection");
            assertThat(wait.get(10, TimeUnit.SECONDS)).isInstanceOf(KilnException.class)
                    .isNotInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("SHUTDOWN").hasMessageContaining("QEMU closed the QMP connection");
            assertThatThrownBy(() -> qmp.execute("query-status")).isInstanceOf(QmpException.class).hasMessageContaining("closed");
            qmp.close("Kiln closes it too, later");
            assertThat(qmp.closedByKiln()).isFalse();
            assertThat(qmp.closeReason()).isEqualTo("QEMU closed the QMP connection");
        }
    }

    /** Kiln closing a connection QEMU has hung up on already, before any reader noticed: it was lost. */
    @Test
    void aCloseAfterQemuHungUpCountsAsLost() throws Exception {
        try (Pair p = Pair.open()) {
            Qmp qmp = handshake(p);
            p.fake().close();
            qmp.close("QEMU exited");
            assertThat(qmp.closedByKiln()).isFalse();
            assertThat(qmp.closeReason()).isEqualTo("QEMU closed the QMP connection");
            assertThatThrownBy(() -> qmp.execute("query-status")).isInstanceOf(QmpException.class)
                    .hasMessageContaining("QEMU closed the QMP connection");
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
