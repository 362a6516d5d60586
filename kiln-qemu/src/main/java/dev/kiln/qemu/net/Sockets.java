package dev.kiln.qemu.net;

import dev.kiln.os.Fd;
import dev.kiln.qemu.internal.NetworkEnds;

/** Lets {@code QemuMachine} hand the socket of a cable end or a port to QEMU, and no one else. */
final class Sockets implements NetworkEnds.Access {
    private Sockets() {}

    static void register() {
        NetworkEnds.register(new Sockets());
    }

    @Override
    public Fd socket(Object end) {
        return switch (end) {
            case Cable.End e -> e.socket;
            case Port p -> p.fd();
            default -> throw new IllegalArgumentException("not a cable end or a port: " + end);
        };
    }
}
