package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.image.FirmwareVm.Firmware;
import dev.kiln.support.HostCommand;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * A Debian image built as a bootable disk without Kiln's agent (with SSH and cloud-init, like a distribution's cloud
 * image; the image kiln-qemu's cloud image tests use), booted by SeaBIOS and by OVMF on q35 under TCG from a qcow2 overlay to root's automatic login on the serial
 * console; and what each firmware prints there when the disk does not boot.
 */
class BootableDebianImageTest {
    private static final Duration BOOT = Duration.ofMinutes(5), NO_BOOT = Duration.ofMinutes(2);
    private static final Pattern PROMPT = Pattern.compile("root@kiln:~# ");
    private static GuestImage image;

    @BeforeAll
    static void buildImage() {
        assumeTrue("root".equals(System.getProperty("user.name")), "building Debian images needs root (mmdebstrap --mode=root)");
        for (String tool : List.of("mmdebstrap", "mke2fs", "mkfs.fat", "mcopy", "syslinux", "sfdisk")) {
            assumeTrue(Apt.onPath(tool) != null, "needs " + tool + " (apt-get install mmdebstrap e2fsprogs dosfstools mtools syslinux fdisk)");
        }
        assumeTrue(Files.isRegularFile(BootableDisk.GPT_MBR), "needs " + BootableDisk.GPT_MBR + " (apt-get install syslinux-common)");
        long start = System.nanoTime();
        image = DebianImage.builder().noAgent().bootable().packages("cloud-init", "openssh-server", "sudo").build(System.out::println);
        System.out.println("image ready in " + DefaultImage.since(start) + ": " + image.description());
    }

    @Test
    void theImageIsABootableDiskWithoutAnAgent() throws Exception {
        assertThat(image.firmwareBoot()).isTrue();
        assertThat(image.agent()).isFalse();
        assertThat(image.readyMarker()).isNull();
        assertThat(image.description()).contains("cloud-init, openssh-server, sudo, no guest agent").contains("booted by its firmware");
        Path disk = image.validate().rootDisk();
        HostCommand.Result table = HostCommand.run(List.of("sfdisk", "--dump", disk.toString()), null, Duration.ofSeconds(30), "sfdisk --dump");
        assertThat(table.ok()).as(table.complaint()).isTrue();
        assertThat(table.stdout()).contains("label: gpt").contains("attrs=\"LegacyBIOSBootable\"")
                .containsIgnoringCase("uuid=" + BootableDisk.rootPartitionId(disk.getParent().getFileName().toString()));
        long allocated = Long.parseLong(HostCommand.run(List.of("du", "-k", disk.toString()), null, Duration.ofSeconds(30), "du")
                .stdout().split("\\s+")[0]);
        System.out.println("disk: " + DefaultImage.mib(Files.size(disk)) + ", " + DefaultImage.mib(allocated * 1024) + " allocated");
        assertThat(allocated * 1024).as("the disk stays sparse").isLessThan(Files.size(disk) * 3 / 4);
    }

    @ParameterizedTest
    @EnumSource(Firmware.class)
    void theFirmwareBootsTheDiskToALogin(Firmware firmware, @TempDir Path dir) throws Exception {
        assumeFirmware(firmware);
        Path overlay = dir.resolve("overlay.qcow2");
        HostCommand.Result created = HostCommand.run(List.of("qemu-img", "create", "-q", "-f", "qcow2", "-b", image.rootDisk().toString(),
                "-F", "raw", overlay.toString()), null, Duration.ofSeconds(30), "qemu-img create");
        assertThat(created.ok()).as(created.complaint()).isTrue();
        try (FirmwareVm vm = new FirmwareVm(firmware, overlay, "qcow2", true, dir)) {
            Duration kernel = awaitOrFail(vm, Pattern.compile("Linux version \\S+-amd64"), BOOT, "the kernel");
            Duration login = awaitOrFail(vm, PROMPT, BOOT, "root's automatic login on ttyS0");
            assertThat(vm.plainConsole()).contains("root=PARTUUID=").contains("Welcome to Debian GNU/Linux 12 (bookworm)!")
                    .contains("kiln login: root (automatic login)").contains("Started ssh.service - OpenBSD Secure Shell server.");
            // The firmware that booted, the root file system, Debian's 9p and virtiofs modules, and networkd's DHCP lease.
            vm.type("echo firmware=$(test -d /sys/firmware/efi && echo uefi || echo bios) root=$(findmnt -no SOURCE /);"
                    + " modprobe 9pnet_virtio && modprobe 9p && modprobe virtiofs && echo modules-$((40+2));"
                    + " timeout 60 sh -c 'until ip -4 -br addr | grep -q 10.0.2.15; do sleep 0.2; done' && echo dhcp-$((1+1))\n");
            String expected = "firmware=" + (firmware == Firmware.OVMF ? "uefi" : "bios") + " root=/dev/vda2";
            awaitOrFail(vm, Pattern.compile(Pattern.quote(expected)), Duration.ofSeconds(60), expected);
            awaitOrFail(vm, Pattern.compile("modules-42"), Duration.ofSeconds(60), "9p and virtiofs modules loaded");
            awaitOrFail(vm, Pattern.compile("dhcp-2"), Duration.ofSeconds(90), "an address from DHCP");
            System.out.printf("%s: kernel after %d ms, root's login after %d ms%n", firmware, kernel.toMillis(), login.toMillis());
        }
    }

    /**
     * A disk without a bootloader: what each firmware says on the serial console, which Kiln watches for. No NIC: OVMF
     * would try PXE and HTTP boot over IPv4 and IPv6 first, minutes under TCG.
     */
    @ParameterizedTest
    @EnumSource(Firmware.class)
    void aDiskThatDoesNotBootIsReportedOnTheConsole(Firmware firmware, @TempDir Path dir) throws Exception {
        assumeFirmware(firmware);
        Path blank = dir.resolve("blank.raw");
        try (RandomAccessFile f = new RandomAccessFile(blank.toFile(), "rw")) {
            f.setLength(64 << 20);
        }
        try (FirmwareVm vm = new FirmwareVm(firmware, blank, "raw", false, dir)) {
            // OVMF falls back to its UEFI shell; a build without one (or secure boot refusing it) says it found nothing.
            Pattern givenUp = firmware == Firmware.SEABIOS ? Pattern.compile("No bootable device\\.")
                    : Pattern.compile("BdsDxe: loading Boot\\d{4} \"EFI Internal Shell\"|BdsDxe: No bootable option or device was found\\.");
            Duration said = awaitOrFail(vm, givenUp, NO_BOOT, firmware + " giving up on the disk");
            if (firmware == Firmware.SEABIOS) assertThat(vm.console()).contains("Booting from Hard Disk...", "Boot failed: not a bootable disk");
            else assertThat(vm.plainConsole()).containsPattern("BdsDxe: failed to load Boot\\d{4} \"UEFI Misc Device\" from .*: Not Found");
            System.out.printf("%s: no-boot message after %d ms%n", firmware, said.toMillis());
        }
    }

    private static void assumeFirmware(Firmware firmware) {
        assumeTrue(Apt.onPath("qemu-system-x86_64") != null && Apt.onPath("qemu-img") != null, "needs qemu-system-x86_64 and qemu-img");
        if (firmware == Firmware.OVMF) {
            assumeTrue(Files.isRegularFile(FirmwareVm.OVMF_CODE) && Files.isRegularFile(FirmwareVm.OVMF_VARS),
                    "needs " + FirmwareVm.OVMF_CODE + " and " + FirmwareVm.OVMF_VARS + " (apt-get install ovmf)");
        }
    }

    private static Duration awaitOrFail(FirmwareVm vm, Pattern pattern, Duration timeout, String what) throws InterruptedException {
        Duration after = vm.await(pattern, timeout);
        if (after == null) fail("no " + what + " on the console within " + timeout.toSeconds() + " s; console:\n" + vm.console());
        return after;
    }
}
