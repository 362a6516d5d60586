package dev.kiln.firecracker.api.model;

/** {@code NetworkInterface}: a virtio-net device on a host tap device. */
public record NetworkInterface(String guestMac, String hostDevName, String ifaceId, Integer mtu,
                               RateLimiter rxRateLimiter, RateLimiter txRateLimiter) {
    public static NetworkInterface of(String ifaceId, String hostDevName, String guestMac) {
        return new NetworkInterface(guestMac, hostDevName, ifaceId, null, null, null);
    }

    public NetworkInterface withRateLimiters(RateLimiter rx, RateLimiter tx) {
        return new NetworkInterface(guestMac, hostDevName, ifaceId, mtu, rx, tx);
    }
}
