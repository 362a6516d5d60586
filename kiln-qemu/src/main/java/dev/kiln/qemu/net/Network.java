package dev.kiln.qemu.net;

import dev.kiln.os.Fd;
import dev.kiln.os.Posix;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * An Ethernet segment for many machines: a learning switch Kiln runs on one platform thread, with faults a test
 * can inject on demand, in the spirit of a Jepsen nemesis.
 *
 * <pre>{@code
 * try (Network net = Network.create()) {
 *     Port a = net.port("a"), b = net.port("b"), c = net.port("c");
 *     // QemuMachine.builder().nic(a)… for each machine
 *     net.partition(List.of(a), List.of(b, c)); // a hears no one, b and c still talk
 *     net.heal();
 * }
 * }</pre>
 *
 * <p>The switch learns which port each unicast source address is on, forwards unicast frames to the port that
 * address was learned on, and floods broadcast, multicast and unknown unicast frames to every other port.
 *
 * <p>Faults act on frames the switch forwards after the call returns (frames already queued with a delay are
 * still delivered, like packets already on the wire, except for {@link #linkDown}, which drops them):
 * <ul>
 * <li>{@link #partition}: frames between the two groups are dropped, both ways. Partitions add up: each call cuts
 *     more pairs of ports, until {@link #heal()}.
 * <li>{@link #loss}: each frame into or out of the port is dropped with that probability.
 * <li>{@link #delay}: frames into and out of the port are held that long (a frame between two delayed ports waits
 *     for both); order is kept.
 * <li>{@link #linkDown}: the switch drops everything from and to the port, as if its cable were pulled (the
 *     guest still sees carrier unless its NIC's link is set down too, e.g. with QMP {@code set_link}).
 * <li>{@link #heal()}: clears partitions and every port's faults.
 * </ul>
 *
 * <p>Each port has a bounded output queue ({@link Builder#queueBytes}); a machine that does not read loses
 * frames (counted in {@link PortStats#droppedQueueFull()}) and never stalls the others. A port that sends
 * something that is not length-prefixed Ethernet frames is disconnected, with the reason logged and kept in
 * {@link PortStats#disconnectReason()}; the switch goes on.
 *
 * <p>Thread-safe: control calls may come from any thread; each takes effect before it returns.
 * {@link #close()} stops the switch thread and closes every socket it made.
 */
public final class Network implements AutoCloseable {
    /** The longest Ethernet frame (without FCS) a port may send; longer is taken as garbage. */
    public static final int MAX_FRAME_BYTES = Switch.MAX_FRAME_BYTES;
    private static final AtomicInteger COUNT = new AtomicInteger();

    private final String name;
    private final Switch fabric;
    private final Map<String, Port> ports = new LinkedHashMap<>(); // guarded by itself
    private volatile boolean closed;

    private Network(Builder b) {
        this.name = b.name != null ? b.name : "net" + COUNT.incrementAndGet();
        this.fabric = new Switch(name, b.queueBytes, b.seed != null ? b.seed : ThreadLocalRandom.current().nextLong());
        fabric.start();
    }

    /** A network with the defaults of {@link Builder}. */
    public static Network create() {
        return builder().create();
    }

    public static Builder builder() {
        return new Builder();
    }

    public String name() {
        return name;
    }

    /**
     * A new port named {@code name} (unique within this network), for one machine's NIC. Its socket is created
     * here; the switch serves it at once.
     */
    public Port port(String name) {
        Objects.requireNonNull(name, "name");
        if (name.isBlank()) throw new IllegalArgumentException("a port needs a name");
        synchronized (ports) {
            if (ports.containsKey(name)) throw new IllegalArgumentException("network " + this.name + " already has a port named " + name);
            if (closed) throw new IllegalStateException("network " + this.name + " is closed");
            Fd[] pair = Posix.socketPair();
            try {
                Posix.setNonBlocking(pair[0], true);
                Link link = fabric.call("add port " + name, () -> fabric.attach(name, pair[0]));
                Port port = new Port(this, name, MacAddresses.next(), pair[1], link);
                ports.put(name, port);
                return port;
            } catch (RuntimeException e) {
                pair[0].close();
                pair[1].close();
                throw e;
            }
        }
    }

    /** The ports not closed, in the order they were made. */
    public List<Port> ports() {
        synchronized (ports) {
            return List.copyOf(ports.values());
        }
    }

    /**
     * Drops every frame between a port of {@code a} and a port of {@code b}, both ways, until {@link #heal()}.
     * Frames within a group still pass. Adds to partitions already in force.
     */
    public void partition(Collection<Port> a, Collection<Port> b) {
        List<Link> left = links(a, "partition"), right = links(b, "partition");
        for (Link l : left) if (right.contains(l))
            throw new IllegalArgumentException("port " + l.name + " is on both sides of the partition");
        fabric.call("partition " + names(left) + " from " + names(right), () -> {
            for (Link x : left) for (Link y : right) fabric.cut(x, y);
            return null;
        });
    }

    /** Cuts {@code port} off from every other port this network has now. */
    public void isolate(Port port) {
        List<Port> others = new ArrayList<>(ports());
        others.remove(check(port, "isolate"));
        partition(List.of(port), others);
    }

    /** Ends all partitions and clears every port's loss, delay and link-down. */
    public void heal() {
        fabric.call("heal", () -> {
            fabric.heal();
            return null;
        });
    }

    /** Drops each frame into or out of {@code port} with {@code probability} (0 for none, 1 for all). */
    public void loss(Port port, double probability) {
        if (!(probability >= 0 && probability <= 1))
            throw new IllegalArgumentException("loss probability must be within 0..1, got " + probability);
        Link l = check(port, "set loss").link;
        fabric.call("set loss " + probability + " on " + l.name, () -> {
            l.loss = probability;
            return null;
        });
    }

    /** Holds frames into and out of {@code port} for {@code delay} (zero for none); order is kept. */
    public void delay(Port port, Duration delay) {
        if (delay.isNegative()) throw new IllegalArgumentException("delay must not be negative, got " + delay);
        long nanos = delay.toNanos();
        Link l = check(port, "set delay").link;
        fabric.call("set delay " + delay + " on " + l.name, () -> {
            l.delayNanos = nanos;
            return null;
        });
    }

    /** Drops every frame from and to {@code port}, including those queued for it, until {@link #linkUp} or heal. */
    public void linkDown(Port port) {
        Link l = check(port, "set link down").link;
        fabric.call("set link " + l.name + " down", () -> {
            fabric.linkDown(l);
            return null;
        });
    }

    public void linkUp(Port port) {
        Link l = check(port, "set link up").link;
        fabric.call("set link " + l.name + " up", () -> {
            l.up = true;
            return null;
        });
    }

    PortStats stats(Port port) {
        Link l = port.link;
        return fabric.call("read the counters of " + l.name, l::stats);
    }

    /** A multi-line account of the switch: each port with its state, faults and counters, for test failures. */
    public String describe() {
        return fabric.call("describe", () -> {
            StringBuilder s = new StringBuilder("network " + name + ": " + fabric.links().size() + " ports, "
                    + fabric.partitions() + " cut port pairs, " + fabric.learnedAddresses() + " learned addresses\n");
            for (Link l : fabric.links()) {
                PortStats st = l.stats();
                String faults = l.faults();
                s.append("  ").append(l.name).append(st.connected() ? "" : " (disconnected: " + st.disconnectReason() + ")")
                        .append(faults.isEmpty() ? "" : " [" + faults + "]")
                        .append(": in ").append(st.framesIn()).append(" frames/").append(st.bytesIn()).append(" B, out ")
                        .append(st.framesOut()).append(" frames/").append(st.bytesOut()).append(" B, dropped ")
                        .append(st.droppedByFault()).append(" by faults, ").append(st.droppedQueueFull()).append(" queue full\n");
            }
            return s.toString();
        });
    }

    void remove(Port port) {
        synchronized (ports) {
            if (port.isClosed()) return;
            try {
                if (!closed) port.closed(fabric.call("close port " + port.name(), () -> {
                    fabric.detach(port.link);
                    return port.link.stats();
                }));
            } finally {
                ports.remove(port.name());
                port.fd().close();
            }
        }
    }

    /** Stops the switch and closes every socket of every port; idempotent. */
    @Override
    public void close() {
        synchronized (ports) {
            if (closed) return;
            closed = true;
        }
        try {
            fabric.close();
        } finally {
            synchronized (ports) {
                boolean stopped = !fabric.isRunning(); // then its state is ours to read
                for (Port p : ports.values()) {
                    if (!p.isClosed()) p.closed(stopped ? p.link.stats()
                            : new PortStats(0, 0, 0, 0, 0, 0, false, "the network was closed, its switch thread did not stop"));
                    p.fd().close();
                }
                ports.clear();
            }
        }
    }

    /** Whether the switch thread is running (false once closed). */
    public boolean isRunning() {
        return fabric.isRunning();
    }

    @Override
    public String toString() {
        return "Network[" + name + ", " + ports().size() + " ports" + (closed ? ", closed" : "") + "]";
    }

    private Port check(Port port, String what) {
        Objects.requireNonNull(port, "port");
        if (port.network() != this)
            throw new IllegalArgumentException("cannot " + what + ": " + port + " belongs to network " + port.network().name() + ", not " + name);
        if (port.isClosed()) throw new IllegalArgumentException("cannot " + what + ": " + port + " is closed");
        return port;
    }

    private List<Link> links(Collection<Port> group, String what) {
        return group.stream().map(p -> check(p, what).link).distinct().toList();
    }

    private static String names(List<Link> links) {
        return links.stream().map(l -> l.name).toList().toString();
    }

    public static final class Builder {
        private String name;
        private long queueBytes = 1 << 20;
        private Long seed;

        private Builder() {}

        /** Names the network (in logs, errors and the switch thread's name); default "net1", "net2"… */
        public Builder name(String name) {
            if (name == null || name.isBlank()) throw new IllegalArgumentException("a network needs a non-blank name");
            this.name = name;
            return this;
        }

        /**
         * How many bytes of frames may wait for each port before more are dropped (default 1 MiB). Must hold the
         * longest frame; raise it for long delays on busy ports (delay × bandwidth).
         */
        public Builder queueBytes(long bytes) {
            if (bytes < 4 + MAX_FRAME_BYTES || bytes > 1L << 30)
                throw new IllegalArgumentException("queueBytes must be within " + (4 + MAX_FRAME_BYTES) + "..2^30, got " + bytes);
            this.queueBytes = bytes;
            return this;
        }

        /** Seeds the random loss, so a failing run can be replayed with the same drops. */
        public Builder seed(long seed) {
            this.seed = seed;
            return this;
        }

        public Network create() {
            return new Network(this);
        }
    }
}
