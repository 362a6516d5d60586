package dev.kiln.qemu.net;

import dev.kiln.os.Fd;

/**
 * One port of a {@link Network}'s switch. Plug a machine into it with {@code QemuMachine.builder().nic(port)}; the
 * switch holds the other end of the socket. The VMM gets its own copy of the machine's end at spawn; the network
 * closes Kiln's at the latest. {@link #close()} unplugs the port from the switch for good.
 */
public final class Port implements AutoCloseable {
    static {
        Sockets.register();
    }

    private final Network network;
    private final String name;
    private final String mac;
    private final Fd fd;
    final Link link;
    private volatile PortStats finalStats;

    Port(Network network, String name, String mac, Fd fd, Link link) {
        this.network = network;
        this.name = name;
        this.mac = mac;
        this.fd = fd;
        this.link = link;
    }

    public String name() {
        return name;
    }

    /** A locally administered MAC address for the NIC plugged in here, distinct from every other Kiln hands out. */
    public String mac() {
        return mac;
    }

    /** The machine's end of the port's socket. */
    Fd fd() {
        return fd;
    }

    public Network network() {
        return network;
    }

    /** The switch's counters for this port (the last ones, once the port or network is closed). */
    public PortStats stats() {
        PortStats last = finalStats;
        if (last != null) return last;
        return network.stats(this);
    }

    boolean isClosed() {
        return finalStats != null;
    }

    void closed(PortStats last) {
        finalStats = last;
    }

    /** Unplugs the port: the switch drops its socket and forgets its addresses; the name can be used again. */
    @Override
    public void close() {
        network.remove(this);
    }

    @Override
    public String toString() {
        return "Port[" + network.name() + "/" + name + " " + mac + "]";
    }
}
