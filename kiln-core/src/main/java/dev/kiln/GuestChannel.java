package dev.kiln;

/** How Kiln reaches the guest for {@link Machine#guest()}: exec, files, shutdown. */
public enum GuestChannel {
    /** The image's guest agent when it has one, else SSH when the spec gives a way in (cloud-init or SSH access). */
    AUTO,
    /** qemu-guest-agent (virtio-serial on QEMU, vsock on Firecracker). */
    AGENT,
    /** SSH, with the key Kiln put in through cloud-init or the spec's {@link SshAccess}. */
    SSH
}
