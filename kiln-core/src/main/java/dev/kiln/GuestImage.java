package dev.kiln;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;

/**
 * What to boot: a kernel, an optional initramfs, the kernel command line the image needs and, for an image with a
 * root file system on a disk, that disk. A machine boots such an image from a copy-on-write overlay over the disk,
 * attached as its first drive with the id {@code root} (a spec's own drive named {@code root} takes its place).
 * An image with no kernel is a bootable disk ({@link #bootableDisk}): the firmware boots whatever bootloader it holds.
 *
 * @param kernel       bzImage or uncompressed vmlinux; null for a bootable disk
 * @param initrd       initramfs, or null
 * @param cmdline      kernel arguments the image needs (the VMM adds its own console arguments)
 * @param readyMarker  a line the image prints on its console once its agent runs, or null when it prints none
 * @param agent        whether the image runs qemu-guest-agent where Kiln looks for it (the virtio-serial port
 *                     {@code org.qemu.guest_agent.0} on QEMU; vsock with {@code kiln.agent=vsock} on Firecracker)
 * @param description  what the image is, for logs and reports
 * @param rootDisk     the disk holding the root file system (never written: machines get overlays), or null
 */
public record GuestImage(Path kernel, Path initrd, String cmdline, String readyMarker, boolean agent, String description,
                         Path rootDisk) {
    /** The id of the drive an image's root disk is attached as. */
    public static final String ROOT_DRIVE = "root";

    public GuestImage {
        if (kernel == null && rootDisk == null) throw new NullPointerException("kernel: an image without a kernel is a bootable disk, and needs one");
        if (kernel == null && initrd != null) throw new IllegalArgumentException("initrd: a bootable disk has no initrd of its own");
        cmdline = cmdline == null ? "" : cmdline;
        description = description == null ? (kernel != null ? kernel : rootDisk).toString() : description;
    }

    /**
     * A disk with its own bootloader (a distribution's cloud image, an appliance, a CI golden image), booted by the
     * firmware (SeaBIOS or UEFI, QEMU only). Kiln knows nothing of what runs in it: no ready marker, no agent; give the
     * machine cloud-init or SSH access to reach it.
     */
    public static GuestImage bootableDisk(Path disk, String description) {
        return new GuestImage(null, null, "", null, false, description, Objects.requireNonNull(disk, "disk"));
    }

    /** Whether the firmware boots this image from its disk (it has no kernel of its own). */
    public boolean firmwareBoot() {
        return kernel == null;
    }

    /** This image as it is, but with or without a guest agent where Kiln looks for it. */
    public GuestImage withAgent(boolean hasAgent) {
        return new GuestImage(kernel, initrd, cmdline, readyMarker, hasAgent, description, rootDisk);
    }

    /** An image without a root disk. */
    public GuestImage(Path kernel, Path initrd, String cmdline, String readyMarker, boolean agent, String description) {
        this(kernel, initrd, cmdline, readyMarker, agent, description, null);
    }

    /** A custom kernel and initrd, with no ready marker known. */
    public static GuestImage of(Path kernel, Path initrd) {
        return new GuestImage(kernel, initrd, "", null, false, null);
    }

    public GuestImage withCmdline(String extra) {
        return new GuestImage(kernel, initrd, (cmdline + " " + extra).strip(), readyMarker, agent, description, rootDisk);
    }

    /** This image with its root file system on {@code disk}. */
    public GuestImage withRootDisk(Path disk) {
        return new GuestImage(kernel, initrd, cmdline, readyMarker, agent, description, Objects.requireNonNull(disk, "rootDisk"));
    }

    /**
     * Fails, before anything is spawned, when a file is missing or unreadable, or the initrd is not an
     * archive the kernel can unpack (a cpio, plain or compressed): the kernel would only say so on the
     * console and panic.
     */
    public GuestImage validate() {
        if (kernel != null) check("kernel", kernel);
        if (initrd != null) {
            check("initrd", initrd);
            checkInitrdFormat(initrd);
        }
        if (rootDisk != null) check("root disk", rootDisk);
        return this;
    }

    // cpio "newc"/"crc", gzip, bzip2, lzma, xz, lzo, lz4 (legacy), zstd: what Linux's initramfs unpacker accepts.
    private static final List<byte[]> INITRD_MAGICS = List.of(
            "070701".getBytes(StandardCharsets.US_ASCII), "070702".getBytes(StandardCharsets.US_ASCII),
            new byte[] {0x1f, (byte) 0x8b}, "BZh".getBytes(StandardCharsets.US_ASCII), new byte[] {0x5d, 0x00, 0x00},
            new byte[] {(byte) 0xfd, '7', 'z', 'X', 'Z', 0}, new byte[] {(byte) 0x89, 'L', 'Z', 'O'},
            new byte[] {0x02, 0x21, 0x4c, 0x18}, new byte[] {0x28, (byte) 0xb5, 0x2f, (byte) 0xfd});

    private static void checkInitrdFormat(Path initrd) {
        byte[] head = new byte[6];
        int n;
        try (InputStream in = Files.newInputStream(initrd)) {
            n = in.readNBytes(head, 0, head.length);
        } catch (IOException e) {
            throw new KilnException("cannot read initrd " + initrd.toAbsolutePath() + ": " + e.getMessage(), e);
        }
        for (byte[] magic : INITRD_MAGICS) {
            if (n >= magic.length && Arrays.equals(head, 0, magic.length, magic, 0, magic.length)) return;
        }
        throw new KilnException("initrd " + initrd.toAbsolutePath() + " is not an initramfs: it is neither a cpio archive"
                + " nor compressed with gzip, bzip2, lzma, xz, lzo, lz4 or zstd (it starts with "
                + HexFormat.ofDelimiter(" ").formatHex(head, 0, n) + ")");
    }

    private static void check(String what, Path p) {
        if (!Files.exists(p)) throw new KilnException(what + " not found: " + p.toAbsolutePath());
        if (!Files.isRegularFile(p)) throw new KilnException(what + " is not a regular file: " + p.toAbsolutePath());
        if (!Files.isReadable(p)) throw new KilnException(what + " is not readable: " + p.toAbsolutePath());
    }
}
