package dev.kiln.firecracker.net;

import java.net.Inet4Address;
import java.util.Locale;

/** Guest MAC addresses. */
public final class Mac {
    private Mac() {}

    /**
     * {@code 06:00:} followed by the four bytes of the address: a locally administered unicast MAC from which
     * the guest (Firecracker's test images do) derives its own IP address.
     */
    public static String fromIp(Inet4Address ip) {
        byte[] b = ip.getAddress();
        return String.format(Locale.ROOT, "06:00:%02X:%02X:%02X:%02X", b[0] & 0xff, b[1] & 0xff, b[2] & 0xff, b[3] & 0xff);
    }

    public static String fromIp(String dotted) {
        return fromIp(Ipv4Allocator.parse(dotted));
    }
}
