package dev.kiln;

import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/** A network card of a {@link MachineSpec}. */
public sealed interface Nic {
    /**
     * User-mode networking (QEMU's SLIRP): the guest reaches the host and the outside through the VMM, and guest
     * TCP ports are forwarded from 127.0.0.1. QEMU only; Firecracker has no user-mode networking.
     */
    record UserNetwork(List<Forward> forwards) implements Nic {
        public UserNetwork {
            forwards = List.copyOf(forwards);
        }
    }

    /** A tap device on the host, made beforehand (e.g. in a network namespace); {@code mac} may be null. */
    record Tap(String device, String mac) implements Nic {
        private static final Pattern MAC = Pattern.compile("(?i)[0-9a-f]{2}(:[0-9a-f]{2}){5}");

        public Tap {
            Objects.requireNonNull(device, "device");
            if (device.isBlank() || device.length() > 15) {
                throw new IllegalArgumentException("nics: tap device name must be 1 to 15 characters, got '" + device + "'");
            }
            if (mac != null && !MAC.matcher(mac).matches()) {
                throw new IllegalArgumentException("nics: MAC address must look like 02:00:00:00:00:01, got '" + mac + "'");
            }
        }
    }

    /** A guest TCP port reachable from 127.0.0.1:hostPort (0: a free port the kernel picks when the VMM binds it). */
    record Forward(int guestPort, int hostPort) {
        public Forward {
            if (guestPort < 1 || guestPort > 65535) throw new IllegalArgumentException("forwards: guest port out of range: " + guestPort);
            if (hostPort < 0 || hostPort > 65535) throw new IllegalArgumentException("forwards: host port out of range: " + hostPort);
        }
    }
}
