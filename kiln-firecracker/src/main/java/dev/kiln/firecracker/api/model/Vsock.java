package dev.kiln.firecracker.api.model;

/**
 * {@code Vsock}: a virtio-vsock device. Firecracker listens on {@code udsPath} for host-initiated
 * connections ({@code CONNECT <port>\n}) and connects to {@code udsPath_<port>} for guest-initiated ones.
 */
public record Vsock(Integer guestCid, String udsPath, String vsockId) {
    public static Vsock of(int guestCid, String udsPath) {
        return new Vsock(guestCid, udsPath, null);
    }
}
