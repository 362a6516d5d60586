package dev.kiln.agent;

import java.io.IOException;
import java.nio.channels.SocketChannel;
import java.time.Duration;

/**
 * Byte-stream ports between host and guest that commands stream over, provided by a VMM that has them (QEMU:
 * virtio-serial ports). They come in slots of four: a control port a guest shell reads its commands from and reports
 * on, and the stdin, stdout and stderr of the command it runs. The guest finds a port by its name in
 * {@code /sys/class/virtio-ports/*}{@code /name}.
 */
public interface ExecPorts {
    /** The four ports of a slot. */
    enum Role { CONTROL, STDIN, STDOUT, STDERR }

    /** How many slots there are (how many commands can stream at once). */
    int slots();

    /** The port's name as the guest sees it. */
    String name(int slot, Role role);

    /** A new connection to the port's host end (the VMM drops an earlier one's unread bytes with it). */
    SocketChannel connect(int slot, Role role) throws IOException;

    /**
     * Runs {@code listener} when the guest has closed the port (its last holder closed it or exited), on a thread of
     * the VMM connection's: keep it short. A hint only: it may come late, once for several closes, or for an earlier
     * close (QEMU sends its event at most once a second per port).
     */
    void onGuestClose(int slot, Role role, Runnable listener);

    /**
     * Whether the VMM has handed every byte the guest wrote to the port so far to its host end, so that reading the
     * connection until it would block gets them all.
     */
    boolean drained(int slot, Role role, Duration timeout);
}
