package dev.kiln.qemu.net;

import dev.kiln.os.Fd;
import dev.kiln.os.Posix;

/**
 * A direct link between two machines: a connected pair of stream sockets, one end for each machine's NIC
 * ({@code QemuMachine.builder().nic(cable.a(), cable.macA())}). Frames pass straight from one VMM to the other;
 * nothing of Kiln's runs in between, so a cable has no faults to inject (use a {@link Network} for that).
 *
 * <p>The VMMs get their own copies of the ends at spawn: close the cable once both machines have started (or at
 * the latest when they are closed). Closing it early does not cut the link.
 */
public final class Cable implements AutoCloseable {
    private final Fd a;
    private final Fd b;
    private final String macA = MacAddresses.next();
    private final String macB = MacAddresses.next();

    private Cable(Fd a, Fd b) {
        this.a = a;
        this.b = b;
    }

    public static Cable create() {
        Fd[] pair = Posix.socketPair();
        return new Cable(pair[0], pair[1]);
    }

    /** One end, for the first machine's NIC. */
    public Fd a() {
        return a;
    }

    /** The other end, for the second machine's NIC. */
    public Fd b() {
        return b;
    }

    /** A locally administered MAC address for the NIC on end {@code a}, distinct from every other Kiln hands out. */
    public String macA() {
        return macA;
    }

    public String macB() {
        return macB;
    }

    /** Closes both ends (this process's copies); idempotent. */
    @Override
    public void close() {
        try {
            a.close();
        } finally {
            b.close();
        }
    }

    @Override
    public String toString() {
        return "Cable[" + a + " " + macA + " <-> " + b + " " + macB + "]";
    }
}
