package dev.kiln;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A host directory the guest sees at {@code guestPath}, mounted by Kiln once the guest is ready (through its agent or
 * SSH). On QEMU a share is a virtio-fs device served by {@code virtiofsd} (which Kiln starts and stops with the
 * machine) or a virtio-9p device (QEMU serves it, no daemon; the guest kernel needs 9p). Firecracker has neither: a
 * read-only share becomes an ext4 drive made from the directory when the machine starts; a writable one is refused.
 *
 * @param hostDir   the directory on the host
 * @param guestPath where the guest sees it (made if missing)
 * @param readOnly  whether the guest may only read it
 * @param transport how it reaches the guest
 */
public record Share(Path hostDir, String guestPath, boolean readOnly, Transport transport) {
    /** How a share reaches the guest. */
    public enum Transport {
        /** virtio-fs on QEMU, an ext4 drive (read-only) on Firecracker. */
        AUTO,
        /** virtio-fs through virtiofsd (QEMU). */
        VIRTIOFS,
        /** virtio-9p served by QEMU itself (the guest kernel needs 9p: Debian's generic kernel has it, its cloud kernel not). */
        NINE_P
    }

    public Share {
        Objects.requireNonNull(hostDir, "shares: hostDir");
        Objects.requireNonNull(transport, "shares: transport");
        if (guestPath == null || !guestPath.startsWith("/") || guestPath.equals("/") || guestPath.contains("/../")
                || guestPath.endsWith("/..") || guestPath.contains("\n") || guestPath.contains("\0")) {
            throw new IllegalArgumentException("shares: the guest path must be an absolute directory other than /, got '" + guestPath + "'");
        }
        hostDir = hostDir.toAbsolutePath().normalize();
    }

    /** The mount tag of the share at {@code index} among the spec's shares. */
    public static String tag(int index) {
        return "kiln-share" + index;
    }
}
