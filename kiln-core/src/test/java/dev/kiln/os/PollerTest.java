package dev.kiln.os;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

import static org.assertj.core.api.Assertions.assertThat;

@ExtendWith(NoOsLeaks.class)
class PollerTest {
    @Test
    void pollsReadsAndSendsWithErrorsAsValues() throws Exception {
        Fd[] pair = Posix.socketPair();
        try (Fd a = pair[0]; Fd b = pair[1]; Poller poller = new Poller(); Arena arena = Arena.ofConfined()) {
            Posix.setNonBlocking(a, true);
            MemorySegment buf = arena.allocate(16);
            assertThat(poller.read(a.number(), buf)).as("nothing to read yet").isEqualTo(-Poller.EAGAIN);

            poller.clear();
            int ia = poller.add(a.number(), Poller.IN);
            int ib = poller.add(b.number(), (short) (Poller.IN | Poller.OUT));
            assertThat(poller.poll(0)).isEqualTo(1);
            assertThat(poller.ready(ia)).isZero();
            assertThat(poller.ready(ib)).isEqualTo(Poller.OUT);

            MemorySegment hello = arena.allocateFrom("hello", java.nio.charset.StandardCharsets.US_ASCII);
            assertThat(poller.send(b.number(), hello.asSlice(0, 5))).isEqualTo(5);
            assertThat(poller.poll(10_000)).isEqualTo(2);
            assertThat(poller.ready(ia) & Poller.IN).isNotZero();
            assertThat(poller.read(a.number(), buf)).isEqualTo(5);
            assertThat(buf.getString(0, java.nio.charset.StandardCharsets.US_ASCII)).startsWith("hello");

            b.close();
            assertThat(poller.read(a.number(), buf)).as("end of file").isZero();
            long r = poller.send(a.number(), hello.asSlice(0, 5));
            assertThat(r).as("EPIPE, and no SIGPIPE").isEqualTo(-32);
            assertThat(Poller.describe(32)).startsWith("EPIPE");
        }
    }

    @Test
    void anEventFdWakesAPoll() {
        try (Fd event = Posix.eventFd(); Poller poller = new Poller(); Arena arena = Arena.ofConfined()) {
            poller.add(event.number(), Poller.IN);
            assertThat(poller.poll(0)).isZero();
            Posix.signalEventFd(event);
            Posix.signalEventFd(event);
            assertThat(poller.poll(10_000)).isEqualTo(1);
            MemorySegment count = arena.allocate(8, 8);
            assertThat(poller.read(event.number(), count)).isEqualTo(8);
            assertThat(count.get(ValueLayout.JAVA_LONG, 0)).isEqualTo(2);
            assertThat(poller.poll(0)).as("reading resets it").isZero();
        }
    }
}
