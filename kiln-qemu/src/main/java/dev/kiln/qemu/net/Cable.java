package dev.kiln.qemu.net;

import dev.kiln.os.Fd;
import dev.kiln.os.Posix;

/**
 * A direct link between two machines: a connected pair of stream sockets, one end for each machine's NIC
 * ({@code QemuMachine.builder().nic(cable.a())}). Frames pass straight from one VMM to the other;
 * nothing of Kiln's runs in between, so a cable has no faults to inject (use a {@link Network} for that).
 *
 * <p>The VMMs get their own copies of the ends at spawn: close the cable once both machines have started (or at
 * the latest when they are closed). Closing it early does not cut the link.
 */
public final class Cable implements AutoCloseable {
    static {
        Sockets.register();
    }

    private final End a;
    private final End b;

    private Cable(Fd a, Fd b) {
        this.a = new End(a, MacAddresses.next());
        this.b = new End(b, MacAddresses.next());
    }

    public static Cable create() {
        Fd[] pair = Posix.socketPair();
        return new Cable(pair[0], pair[1]);
    }

    /** One end, for the first machine's NIC: {@code QemuMachine.builder().nic(cable.a())}. */
    public End a() {
        return a;
    }

    /** The other end, for the second machine's NIC. */
    public End b() {
        return b;
    }

    /** A locally administered MAC address for the NIC on end {@code a}, distinct from every other Kiln hands out. */
    public String macA() {
        return a.mac();
    }

    public String macB() {
        return b.mac();
    }

    /** Closes both ends (this process's copies); idempotent. */
    @Override
    public void close() {
        try {
            a.socket.close();
        } finally {
            b.socket.close();
        }
    }

    @Override
    public String toString() {
        return "Cable[" + a + " <-> " + b + "]";
    }

    /** One end of a cable: a stream socket for a machine's NIC, and the MAC address that NIC should have. */
    public static final class End {
        final Fd socket;
        private final String mac;

        private End(Fd socket, String mac) {
            this.socket = socket;
            this.mac = mac;
        }

        public String mac() {
            return mac;
        }

        @Override
        public String toString() {
            return socket + " " + mac;
        }
    }
}
