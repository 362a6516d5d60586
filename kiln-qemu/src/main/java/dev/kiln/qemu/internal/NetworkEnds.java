package dev.kiln.qemu.internal;

import dev.kiln.os.Fd;

import java.util.Objects;

/**
 * How {@code QemuMachine} reaches the socket behind a {@code Cable.End} or a {@code Port}: their descriptors are no
 * one else's business, so they are not public; the network package registers this access when it loads. Not exported
 * from the module.
 */
public final class NetworkEnds {
    /** Gives the socket of a cable end or a switch port. */
    public interface Access {
        Fd socket(Object end);
    }

    private static volatile Access access;

    private NetworkEnds() {}

    public static void register(Access a) {
        access = Objects.requireNonNull(a);
    }

    /** The socket of {@code end}, a {@code Cable.End} or a {@code Port}. */
    public static Fd socket(Object end) {
        Access a = access;
        if (a == null) throw new IllegalStateException("no cable end or port has been made yet");
        return a.socket(end);
    }
}
