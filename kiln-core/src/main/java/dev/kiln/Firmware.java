package dev.kiln;

/** What boots a {@linkplain GuestImage#bootableDisk bootable disk} on QEMU's {@code q35} machine. */
public enum Firmware {
    /** SeaBIOS, QEMU's own legacy BIOS: the disk's MBR boot code. The default. */
    BIOS,
    /** UEFI: OVMF (Debian's {@code ovmf} package), with a copy of its variable store for each machine. */
    UEFI
}
