package dev.kiln.image;

import dev.kiln.KilnException;
import dev.kiln.support.HostCommand;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.stream.Stream;

/**
 * A Debian root file system made into a raw GPT disk that boots on its own, under BIOS and UEFI firmware alike, built
 * offline without loop devices or mounts. Partition 1 is an EFI system partition (FAT32, filled with mtools) holding
 * Debian's kernel and initrd, systemd-boot as the removable-media loader {@code EFI/BOOT/BOOTX64.EFI}, and SYSLINUX,
 * which syslinux's GPT MBR code starts from the partition flagged "legacy BIOS bootable". Partition 2 is the ext4 root.
 * The disk's and partitions' UUIDs derive from the image's hash: the kernel command line names the root by its UUID.
 */
final class BootableDisk {
    /** The kernel's arguments besides the root. The last console is /dev/console, where systemd writes: the serial one. */
    static final String KERNEL_OPTIONS = "ro console=tty0 console=ttyS0,115200";
    /** What the image needs to boot on its own: Debian's generic kernel (the cloud one lacks 9p), its initramfs, systemd-boot. */
    static final List<String> PACKAGES = List.of("linux-image-amd64", "initramfs-tools", "systemd-boot-efi");
    /** The build's own files: the initramfs settings, Kiln's changes to the root, the bootloaders' configurations. */
    static final List<String> RESOURCES = List.of("initramfs.sh", "bootable.sh", "20-kiln-dhcp.network", "autologin.conf",
            "masked-units", "boot/loader.conf", "boot/debian.conf", "boot/syslinux.cfg");
    /** Host tools and the packages that have them. */
    static final List<List<String>> TOOLS = List.of(List.of("mkfs.fat", "dosfstools"), List.of("mcopy", "mtools"),
            List.of("syslinux", "syslinux"), List.of("sfdisk", "fdisk"));
    /** syslinux's MBR boot code for GPT disks (package syslinux-common): boots the legacy-BIOS-bootable partition. */
    static final Path GPT_MBR = Path.of("/usr/lib/syslinux/mbr/gptmbr.bin");
    private static final String SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
    private static final String ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
    private static final long SECTORS_PER_MIB = 2048;
    private static final Duration TIMEOUT = Duration.ofMinutes(10);

    final String kernelRelease;
    final UUID diskId, espId, rootId;
    /** The EFI system partition's size: room for the boot files twice over, and at least 128 MiB (sparse: free room costs nothing). */
    final long espMib;
    private final Path root, kernel, initrd;

    /** The disk for the root file system at {@code root}, which holds Debian's kernel and initrd in /boot. */
    BootableDisk(Path root, String hash) throws IOException {
        this.root = root;
        Path boot = root.resolve("boot");
        List<Path> kernels;
        try (Stream<Path> files = Files.list(boot)) {
            kernels = files.filter(p -> p.getFileName().toString().startsWith("vmlinuz-")).toList();
        }
        if (kernels.size() != 1) throw new KilnException("Debian image: expected one kernel in /boot, found " + kernels);
        kernel = kernels.getFirst();
        kernelRelease = kernel.getFileName().toString().substring("vmlinuz-".length());
        initrd = boot.resolve("initrd.img-" + kernelRelease);
        if (!Files.isRegularFile(initrd)) throw new KilnException("Debian image: initramfs-tools made no initrd for " + kernelRelease);
        if (!Files.isRegularFile(root.resolve(SYSTEMD_BOOT))) throw new KilnException("Debian image: no /" + SYSTEMD_BOOT);
        diskId = uuid(hash, "disk");
        espId = uuid(hash, "esp");
        rootId = rootPartitionId(hash);
        long bootBytes = Files.size(kernel) + Files.size(initrd) + Files.size(root.resolve(SYSTEMD_BOOT));
        espMib = Math.max(128, ((bootBytes >> 20) * 2 + 63) / 64 * 64);
    }

    /** The root partition's UUID for the image with this hash: its /etc/fstab needs it before the disk is made. */
    static UUID rootPartitionId(String hash) {
        return uuid(hash, "root");
    }

    private static UUID uuid(String hash, String what) {
        return UUID.nameUUIDFromBytes(("kiln debian image " + hash + " " + what).getBytes(StandardCharsets.UTF_8));
    }

    String kernelCommandLine() {
        return "root=PARTUUID=" + rootId + " " + KERNEL_OPTIONS;
    }

    /** What the disk holds besides the root file system: the ESP, and 1 MiB at each end for the GPT and alignment. */
    long overheadMib() {
        return espMib + 2;
    }

    /** Writes the sparse disk: partition table, MBR boot code, the ESP made in {@code work}, and the ext4 {@code rootFs}. */
    void write(Path rootFs, long rootMib, Path work, Path disk) throws IOException {
        Path esp = espImage(work);
        try (RandomAccessFile f = new RandomAccessFile(disk.toFile(), "rw")) {
            f.setLength((overheadMib() + rootMib) << 20);
        }
        Path table = Files.writeString(work.resolve("partitions.sfdisk"), String.join("\n",
                "label: gpt", "label-id: " + diskId, "unit: sectors", "first-lba: " + SECTORS_PER_MIB,
                partition(1, espMib, ESP_TYPE, espId, "EFI system partition") + ", attrs=\"LegacyBIOSBootable\"",
                partition(1 + espMib, rootMib, ROOT_TYPE, rootId, "root"), ""));
        run("sfdisk", "sh", "-c", "exec sfdisk --quiet --no-reread --no-tell-kernel \"$1\" < \"$2\"", "sh", disk.toString(), table.toString());
        run("dd (MBR boot code)", "dd", "if=" + GPT_MBR, "of=" + disk, "bs=440", "count=1", "conv=notrunc", "status=none");
        place(esp, disk, 1);
        place(rootFs, disk, 1 + espMib);
    }

    private static String partition(long startMib, long sizeMib, String type, UUID id, String name) {
        return "start=" + startMib * SECTORS_PER_MIB + ", size=" + sizeMib * SECTORS_PER_MIB + ", type=" + type + ", uuid=" + id
                + ", name=\"" + name + "\"";
    }

    /** The ESP as a file system image of its own, with the boot files and both bootloaders, each pointed at the root. */
    private Path espImage(Path work) throws IOException {
        Path tree = Files.createDirectories(work.resolve("esp"));
        copy(root.resolve(SYSTEMD_BOOT), tree.resolve("EFI/BOOT/BOOTX64.EFI"));
        copy(kernel, tree.resolve("vmlinuz"));
        copy(initrd, tree.resolve("initrd.img"));
        for (String config : List.of("loader/loader.conf", "loader/entries/debian.conf", "syslinux.cfg")) {
            String text = new String(DebianImage.resource("boot/" + Path.of(config).getFileName()), StandardCharsets.UTF_8);
            Files.createDirectories(tree.resolve(config).getParent());
            Files.writeString(tree.resolve(config), text.replace("@OPTIONS@", kernelCommandLine()));
        }
        Path image = work.resolve("esp.fat");
        // -h: the partition's first sector, which a FAT boot sector records
        run("mkfs.fat", "mkfs.fat", "-C", "-F", "32", "-n", "ESP", "-h", Long.toString(SECTORS_PER_MIB),
                "-i", espId.toString().substring(0, 8), image.toString(), Long.toString(espMib * 1024));
        List<String> mcopy = new ArrayList<>(List.of("mcopy", "-s", "-i", image.toString()));
        try (Stream<Path> top = Files.list(tree)) {
            top.sorted().forEach(p -> mcopy.add(p.toString()));
        }
        mcopy.add("::/");
        run("mcopy", mcopy.toArray(String[]::new));
        // The mtools-based installer: writes ldlinux.sys, ldlinux.c32 and the FAT boot sector without mounting anything.
        run("syslinux", "syslinux", "--install", image.toString());
        return image;
    }

    private static void copy(Path from, Path to) throws IOException {
        Files.createDirectories(to.getParent());
        Files.copy(from, to);
    }

    /** Copies a file system image into the disk at {@code offsetMib}, leaving its holes holes. */
    private static void place(Path image, Path disk, long offsetMib) {
        run("dd (" + image.getFileName() + ")", "dd", "if=" + image, "of=" + disk, "bs=1M", "seek=" + offsetMib,
                "conv=notrunc,sparse", "status=none");
    }

    private static void run(String what, String... command) {
        HostCommand.Result r = HostCommand.run(List.of(command), null, TIMEOUT, what);
        if (!r.ok()) throw new KilnException("Debian image: " + what + " failed (exit " + r.exitCode() + "): " + r.complaint());
    }
}
