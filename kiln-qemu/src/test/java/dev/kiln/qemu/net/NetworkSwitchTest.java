package dev.kiln.qemu.net;

import dev.kiln.KilnException;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import java.util.stream.Stream;

import static dev.kiln.qemu.net.TestNic.BROADCAST;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The switch behind {@link Network}, driven by Java NICs on its ports: no VMM involved. */
class NetworkSwitchTest {
    /** Long enough for a loaded 2-core machine to forward a frame; only ever waited in full when nothing must come. */
    static final Duration QUIET = Duration.ofMillis(300);
    static final Duration ARRIVES = Duration.ofSeconds(10);

    Set<String> fdsBefore;

    @BeforeEach
    void noteFds() throws IOException {
        fdsBefore = socketsAndEventFds();
    }

    @AfterEach
    void nothingLeaks() throws IOException {
        assertThat(socketsAndEventFds()).as("sockets and eventfds left open").isSubsetOf(fdsBefore);
        assertThat(switchThreads()).as("switch threads left running").isEmpty();
    }

    @Test
    void floodsUnknownUnicastThenForwardsOnlyToTheLearnedPort() {
        try (Network net = Network.create()) {
            TestNic a = new TestNic(net.port("a")), b = new TestNic(net.port("b")), c = new TestNic(net.port("c"));
            a.send(b.mac, "who is b");
            assertThat(b.receiveText(ARRIVES)).isEqualTo("who is b");
            assertThat(c.receiveText(ARRIVES)).as("unknown unicast is flooded").isEqualTo("who is b");
            b.send(a.mac, "b to a");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("b to a");
            a.send(b.mac, "a to b");
            assertThat(b.receiveText(ARRIVES)).isEqualTo("a to b");
            assertThat(c.drain(QUIET)).as("c sees nothing once a and b are learned").isEmpty();
            assertThat(a.drain(QUIET)).as("the sender gets nothing back").isEmpty();
        }
    }

    @Test
    void broadcastAndMulticastReachEveryOtherPort() {
        try (Network net = Network.create()) {
            TestNic a = new TestNic(net.port("a")), b = new TestNic(net.port("b")), c = new TestNic(net.port("c"));
            c.send(a.mac, "learn c"); // c is learned: group frames must be flooded anyway
            a.drain(QUIET);
            b.drain(QUIET);
            a.send(BROADCAST, "all");
            a.send(0x3333_0000_0001L, "ipv6 all-nodes");
            for (TestNic nic : List.of(b, c)) {
                assertThat(nic.receiveText(ARRIVES)).isEqualTo("all");
                assertThat(nic.receiveText(ARRIVES)).isEqualTo("ipv6 all-nodes");
            }
            assertThat(a.drain(QUIET)).isEmpty();
            assertThat(net.ports()).extracting(Port::name).containsExactly("a", "b", "c");
        }
    }

    @Test
    void framesOfEverySizeArriveWholeAndInOrderWhateverTheWriteSplits() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b");
            TestNic a = new TestNic(pa), b = new TestNic(pb);
            b.send(a.mac, "learn b");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("learn b");
            Random random = new Random(7);
            List<byte[]> sent = new ArrayList<>();
            int[] sizes = {0, 1, 50, 1486, 9000, Network.MAX_FRAME_BYTES - 14};
            for (int i = 0; i < 200; i++) {
                byte[] payload = new byte[i < sizes.length ? sizes[i] : random.nextInt(2000)];
                random.nextBytes(payload);
                byte[] frame = a.frame(b.mac, payload);
                sent.add(frame);
                byte[] wire = TestNic.framed(frame);
                if (i % 3 == 0) {
                    for (int k = 0; k < wire.length; ) { // dribble: the switch must reassemble across reads
                        int n = Math.min(wire.length - k, 1 + random.nextInt(7));
                        a.sendRaw(java.util.Arrays.copyOfRange(wire, k, k + n));
                        k += n;
                    }
                } else {
                    a.sendRaw(wire);
                }
            }
            for (int i = 0; i < sent.size(); i++) {
                byte[] got = b.receive(ARRIVES);
                assertThat(got).as("frame %d of %d", i, sent.size()).isEqualTo(sent.get(i));
            }
            PortStats stats = pa.stats();
            assertThat(stats.framesIn()).isEqualTo(200);
            assertThat(pb.stats().framesOut()).isEqualTo(200);
            assertThat(pb.stats().bytesOut()).isEqualTo(sent.stream().mapToLong(f -> f.length).sum());
            assertThat(stats.connected()).isTrue();
        }
    }

    @Test
    void partitionDropsFramesBetweenGroupsBothWaysUntilHealed() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b"), pc = net.port("c");
            TestNic a = new TestNic(pa), b = new TestNic(pb), c = new TestNic(pc);
            net.partition(List.of(pa), List.of(pb, pc));
            a.send(BROADCAST, "from a");
            b.send(BROADCAST, "from b");
            assertThat(c.receiveText(ARRIVES)).isEqualTo("from b");
            assertThat(a.drain(QUIET)).as("a hears no one").isEmpty();
            assertThat(b.drain(QUIET)).as("b does not hear a").isEmpty();
            assertThat(c.drain(QUIET)).as("c does not hear a").isEmpty();
            assertThat(pa.stats().droppedByFault()).isEqualTo(1); // b's broadcast, dropped at a
            assertThat(pb.stats().droppedByFault() + pc.stats().droppedByFault()).isEqualTo(2);

            net.heal();
            a.send(BROADCAST, "a again");
            assertThat(b.receiveText(ARRIVES)).isEqualTo("a again");
            assertThat(c.receiveText(ARRIVES)).isEqualTo("a again");
            c.send(a.mac, "c to a");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("c to a");
        }
    }

    @Test
    void partitionsAddUpAndIsolateCutsOnePortFromAllOthers() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b"), pc = net.port("c");
            TestNic a = new TestNic(pa), b = new TestNic(pb), c = new TestNic(pc);
            net.partition(List.of(pa), List.of(pb));
            net.partition(List.of(pb), List.of(pc));
            a.send(BROADCAST, "a");
            assertThat(c.receiveText(ARRIVES)).as("a and c are on the same side of both cuts").isEqualTo("a");
            assertThat(b.drain(QUIET)).isEmpty();
            net.heal();
            net.isolate(pc);
            b.send(BROADCAST, "b");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("b");
            assertThat(c.drain(QUIET)).isEmpty();
            assertThat(net.describe()).contains("3 ports").contains("a:").contains("c:");
        }
    }

    @Test
    void lossOfOneDropsEverythingBothWaysAndZeroNothing() {
        try (Network net = Network.builder().seed(42).create()) {
            Port pa = net.port("a"), pb = net.port("b");
            TestNic a = new TestNic(pa), b = new TestNic(pb);
            net.loss(pa, 1.0);
            for (int i = 0; i < 50; i++) {
                a.send(BROADCAST, "a" + i);
                b.send(BROADCAST, "b" + i);
            }
            assertThat(a.drain(QUIET)).isEmpty();
            assertThat(b.drain(QUIET)).isEmpty();
            assertThat(pa.stats().droppedByFault()).isEqualTo(100);

            net.loss(pa, 0.0);
            for (int i = 0; i < 50; i++) a.send(BROADCAST, "a" + i);
            for (int i = 0; i < 50; i++) assertThat(b.receiveText(ARRIVES)).isEqualTo("a" + i);

            net.loss(pa, 0.5);
            for (int i = 0; i < 200; i++) a.send(BROADCAST, "half" + i);
            int got = b.drain(QUIET).size();
            assertThat(got).as("about half of 200 frames").isBetween(40, 160);
        }
    }

    @Test
    void delayHoldsFramesBackAndKeepsTheirOrder() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b");
            TestNic a = new TestNic(pa), b = new TestNic(pb);
            Duration delay = Duration.ofMillis(400);
            net.delay(pb, delay);
            long start = System.nanoTime();
            for (int i = 0; i < 20; i++) a.send(BROADCAST, "d" + i);
            // The switch reads on its own thread: the frames must be in before the delay is lifted.
            awaitTrue(() -> pa.stats().framesIn() == 20, "the switch to read a's 20 frames", pa::stats);
            net.delay(pb, Duration.ZERO);
            a.send(BROADCAST, "after"); // not delayed, but must not overtake the delayed ones
            for (int i = 0; i < 20; i++) assertThat(b.receiveText(ARRIVES)).isEqualTo("d" + i);
            assertThat(Duration.ofNanos(System.nanoTime() - start)).as("frames waited at least the delay").isGreaterThanOrEqualTo(delay);
            assertThat(b.receiveText(ARRIVES)).isEqualTo("after");

            net.delay(pa, Duration.ofMillis(200));
            start = System.nanoTime();
            b.send(a.mac, "to the delayed port");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("to the delayed port");
            assertThat(Duration.ofNanos(System.nanoTime() - start)).isGreaterThanOrEqualTo(Duration.ofMillis(200));
        }
    }

    @Test
    void linkDownDropsEverythingIncludingQueuedFramesUntilLinkUp() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b");
            TestNic a = new TestNic(pa), b = new TestNic(pb);
            net.delay(pb, Duration.ofSeconds(1));
            for (int i = 0; i < 5; i++) a.send(BROADCAST, "in flight " + i);
            awaitTrue(() -> pa.stats().framesIn() == 5, "the switch to read a's 5 frames", pa::stats);
            net.linkDown(pb);
            net.delay(pb, Duration.ZERO);
            a.send(BROADCAST, "while down");
            b.send(BROADCAST, "from the down port");
            assertThat(b.drain(Duration.ofMillis(1500))).as("queued frames were lost with the link").isEmpty();
            assertThat(a.drain(QUIET)).isEmpty();
            assertThat(pb.stats().droppedByFault()).isEqualTo(7);

            net.linkUp(pb);
            a.send(BROADCAST, "up again");
            assertThat(b.receiveText(ARRIVES)).isEqualTo("up again");
            net.linkDown(pa);
            net.heal();
            b.send(BROADCAST, "healed");
            assertThat(a.receiveText(ARRIVES)).as("heal brings links up").isEqualTo("healed");
        }
    }

    @Test
    void garbageFramingDisconnectsOnlyThatPort() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b"), pc = net.port("c"), pd = net.port("d");
            TestNic a = new TestNic(pa), b = new TestNic(pb), c = new TestNic(pc), d = new TestNic(pd);
            a.sendRaw(new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff, 1, 2, 3});
            b.sendRaw(ByteBuffer.allocate(4 + 5).putInt(5).array()); // shorter than an Ethernet header
            c.sendRaw(ByteBuffer.allocate(4).putInt(Network.MAX_FRAME_BYTES + 1).array());
            for (TestNic nic : List.of(a, b, c)) assertThat(nic.awaitEndOfFile(ARRIVES)).as("the switch hung up").isTrue();
            assertThat(pa.stats().connected()).isFalse();
            assertThat(pa.stats().disconnectReason()).contains("4294967295").contains("framing");
            assertThat(pb.stats().disconnectReason()).contains("length of 5 bytes");
            assertThat(pc.stats().disconnectReason()).contains("65537");

            Port pe = net.port("e");
            TestNic e = new TestNic(pe);
            d.send(BROADCAST, "still switching");
            assertThat(e.receiveText(ARRIVES)).isEqualTo("still switching");
            assertThat(net.isRunning()).isTrue();
        }
    }

    @Test
    void aPortWhoseMachineHangsUpIsDisconnectedAndForgotten() {
        try (Network net = Network.create()) {
            Port pa = net.port("a"), pb = net.port("b"), pc = net.port("c");
            TestNic a = new TestNic(pa), b = new TestNic(pb), c = new TestNic(pc);
            b.send(a.mac, "learn b");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("learn b");
            assertThat(c.receiveText(ARRIVES)).as("a is not learned yet: flooded").isEqualTo("learn b");
            pb.fd().close(); // as when its VMM exits
            awaitTrue(() -> !pb.stats().connected(), "port b to be disconnected", pb::stats);
            assertThat(pb.stats().disconnectReason()).contains("closed the connection");
            a.send(b.mac, "b is gone");
            assertThat(c.receiveText(ARRIVES)).as("b's address was forgotten, so frames to it are flooded again").isEqualTo("b is gone");
        }
    }

    @Test
    void aMachineThatDoesNotReadLosesFramesButDoesNotStallTheOthers() {
        try (Network net = Network.builder().queueBytes(4 + Network.MAX_FRAME_BYTES).create()) {
            Port pa = net.port("a"), pb = net.port("b"), pc = net.port("c");
            TestNic a = new TestNic(pa), b = new TestNic(pb), c = new TestNic(pc);
            b.send(a.mac, "learn b");
            c.send(a.mac, "learn c");
            a.drain(QUIET);
            b.drain(QUIET);
            c.drain(QUIET);
            byte[] big = new byte[1400];
            for (int i = 0; i < 3000; i++) a.send(b.mac, big); // b never reads: its socket and queue fill up
            a.send(c.mac, "c is fine");
            assertThat(c.receiveText(ARRIVES)).isEqualTo("c is fine");
            awaitTrue(() -> pa.stats().framesIn() == 3001, "the switch to read all of a's frames", pa::stats);
            PortStats stats = pb.stats();
            assertThat(stats.droppedQueueFull()).isPositive();
            assertThat(stats.framesOut() + stats.droppedQueueFull()).isLessThanOrEqualTo(3000);
            assertThat(stats.connected()).isTrue();
        }
    }

    @Test
    void closeStopsTheThreadClosesEverySocketAndRefusesFurtherCalls() throws IOException {
        Set<String> before = socketsAndEventFds();
        Network net = Network.builder().name("closing").create();
        List<Port> ports = new ArrayList<>();
        for (int i = 0; i < 20; i++) ports.add(net.port("p" + i));
        assertThat(switchThreads()).as("one thread serves all 20 ports").hasSize(1);
        new TestNic(ports.get(0)).send(BROADCAST, "hello all");
        new TestNic(ports.get(19)).receive(ARRIVES);
        assertThat(socketsAndEventFds()).hasSize(before.size() + 41);

        Port first = ports.get(0);
        first.close();
        assertThat(first.stats().framesIn()).as("a closed port keeps its last counters").isEqualTo(1);
        assertThat(first.stats().connected()).isFalse();
        assertThat(net.ports()).hasSize(19);
        net.port("p0").close(); // the name is free again
        assertThatThrownBy(() -> net.loss(first, 0.5)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("closed");

        net.close();
        net.close();
        assertThat(net.isRunning()).isFalse();
        assertThat(socketsAndEventFds()).isEqualTo(before);
        assertThat(switchThreads()).isEmpty();
        assertThat(ports.get(5).stats().connected()).isFalse();
        assertThatThrownBy(() -> net.port("late")).isInstanceOf(IllegalStateException.class).hasMessageContaining("closed");
        assertThatThrownBy(net::heal).isInstanceOf(KilnException.class).hasMessageContaining("network closing is closed");
    }

    @Test
    void badArgumentsAreRefusedWithTheReason() {
        try (Network one = Network.create(); Network two = Network.create()) {
            Port a = one.port("a"), b = one.port("b"), x = two.port("x");
            assertThatThrownBy(() -> one.port("a")).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("already has a port named a");
            assertThatThrownBy(() -> one.port(" ")).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> one.loss(a, 1.5)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining("0..1");
            assertThatThrownBy(() -> one.loss(a, Double.NaN)).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> one.delay(a, Duration.ofMillis(-1))).isInstanceOf(IllegalArgumentException.class);
            assertThatThrownBy(() -> one.linkDown(x)).isInstanceOf(IllegalArgumentException.class).hasMessageContaining(two.name());
            assertThatThrownBy(() -> one.partition(List.of(a, b), List.of(b))).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("port b is on both sides");
            assertThatThrownBy(() -> Network.builder().queueBytes(100)).isInstanceOf(IllegalArgumentException.class);
            assertThat(a.mac()).matches("02:6b:6e(:[0-9a-f]{2}){3}").isNotEqualTo(b.mac());
        }
    }

    @Test
    void aCableCarriesFramesStraightBetweenItsEnds() throws IOException {
        Set<String> before = socketsAndEventFds();
        try (Cable cable = Cable.create()) {
            TestNic a = new TestNic(cable.a().socket, cable.macA()), b = new TestNic(cable.b().socket, cable.macB());
            a.send(b.mac, "over the cable");
            assertThat(b.receiveText(ARRIVES)).isEqualTo("over the cable");
            b.send(a.mac, "and back");
            assertThat(a.receiveText(ARRIVES)).isEqualTo("and back");
            assertThat(cable.macA()).isNotEqualTo(cable.macB());
        }
        assertThat(socketsAndEventFds()).isEqualTo(before);
    }

    static void awaitTrue(BooleanSupplier condition, String what, java.util.function.Supplier<Object> seen) {
        long deadline = System.nanoTime() + ARRIVES.toNanos();
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) throw new AssertionError("waited " + ARRIVES + " for " + what + "; saw " + seen.get());
            try {
                Thread.sleep(10);
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
        }
    }

    static Set<String> socketsAndEventFds() throws IOException {
        try (Stream<Path> fds = Files.list(Path.of("/proc/self/fd"))) {
            return fds.map(fd -> {
                try {
                    return fd.getFileName() + " " + Files.readSymbolicLink(fd);
                } catch (IOException e) {
                    return "gone";
                }
            }).filter(t -> t.contains("socket:") || t.contains("eventfd")).collect(Collectors.toSet());
        }
    }

    static List<String> switchThreads() {
        return Thread.getAllStackTraces().keySet().stream().map(Thread::getName).filter(n -> n.startsWith("kiln-network-")).toList();
    }
}
