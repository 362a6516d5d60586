package dev.kiln.qemu;

import dev.kiln.Drive;
import dev.kiln.ExecResult;
import dev.kiln.LaunchException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Disks in a real guest: found by their ids, overlays that never write their base, read-only, scratch, kept overlays. */
@ExtendWith(QemuAvailable.class)
class DrivesTest {
    @TempDir
    Path dir;

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    /** A raw disk of {@code mib} MiB that starts with {@code text}. */
    private Path disk(String name, int mib, String text) throws IOException {
        Path p = dir.resolve(name);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength((long) mib << 20);
            f.write(text.getBytes(StandardCharsets.US_ASCII));
        }
        return p;
    }

    /** What the guest sees of each disk, by serial: its device, size in sectors and read-only flag. */
    private record GuestDisk(String device, long sectors, boolean readOnly) {}

    private static Map<String, GuestDisk> disks(QemuMachine vm) {
        String out = vm.guest().exec("sh", "-c",
                "for b in /sys/block/vd*; do echo \"$(cat $b/serial) ${b##*/} $(cat $b/size) $(cat $b/ro)\"; done").orThrow().stdoutText();
        Map<String, GuestDisk> disks = new HashMap<>();
        for (String line : out.strip().split("\n")) {
            String[] f = line.split(" ");
            disks.put(f[0], new GuestDisk(f[1], Long.parseLong(f[2]), f[3].equals("1")));
        }
        return disks;
    }

    private static String readStart(QemuMachine vm, GuestDisk d, int bytes) {
        return vm.guest().exec("sh", "-c", "dd if=/dev/" + d.device() + " bs=" + bytes + " count=1 2>/dev/null").orThrow().stdoutText();
    }

    private static ExecResult writeStart(QemuMachine vm, GuestDisk d, String text) {
        return vm.guest().exec("sh", "-c", "printf '" + text + "' | dd of=/dev/" + d.device() + " conv=fsync 2>&1");
    }

    @Test
    void theGuestFindsEachDriveByItsIdAndAnOverlayNeverWritesItsBase() throws IOException {
        Path base = disk("base.raw", 8, "BASE-CONTENT");
        Path readOnly = disk("ro.raw", 4, "READ-ONLY-DISK");
        byte[] baseBefore = Files.readAllBytes(base);
        Path workDir;
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image())
                .drive(Drive.overlay(base).id("system")).drive(Drive.file(readOnly).readOnly().id("ro"))
                .drive(Drive.scratch(64L << 20).id("scratch")))) {
            workDir = vm.workDir();
            assertThat(vm.commandLine()).anyMatch(a -> a.startsWith("virtio-blk-device,drive=drive-system,serial=system"));
            Map<String, GuestDisk> disks = disks(vm);
            assertThat(disks).containsOnlyKeys("system", "ro", "scratch");
            GuestDisk system = disks.get("system"), ro = disks.get("ro"), scratch = disks.get("scratch");
            assertThat(system.sectors()).isEqualTo(8L << 11);
            assertThat(ro.sectors()).isEqualTo(4L << 11);
            assertThat(scratch.sectors()).isEqualTo(64L << 11);
            assertThat(ro.readOnly()).isTrue();
            assertThat(system.readOnly()).isFalse();

            assertThat(readStart(vm, system, 12)).isEqualTo("BASE-CONTENT");
            assertThat(writeStart(vm, system, "GUEST-WROTE!").exitCode()).isZero();
            assertThat(readStart(vm, system, 12)).isEqualTo("GUEST-WROTE!");

            assertThat(readStart(vm, ro, 14)).isEqualTo("READ-ONLY-DISK");
            ExecResult refused = writeStart(vm, ro, "NO");
            assertThat(refused.exitCode()).as("a write to the read-only disk: %s", refused.stdoutText()).isNotZero();
            assertThat(refused.stdoutText()).containsAnyOf("Operation not permitted", "Read-only");

            assertThat(writeStart(vm, scratch, "SCRATCH").exitCode()).isZero();
            assertThat(readStart(vm, scratch, 7)).isEqualTo("SCRATCH");
        }
        assertThat(Files.readAllBytes(base)).as("the overlay's base").isEqualTo(baseBefore);
        assertThat(workDir).doesNotExist(); // the overlay and the scratch disk went with it
    }

    @Test
    void aKeptOverlayCarriesTheGuestsWritesToTheNextMachineOnQ35() throws IOException {
        Path base = disk("base.raw", 8, "BASE-CONTENT");
        byte[] baseBefore = Files.readAllBytes(base);
        Path kept = dir.resolve("state.qcow2");
        Drive state = Drive.overlay(base, kept).id("state");
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()).drive(state))) {
            assertThat(writeStart(vm, disks(vm).get("state"), "FIRST-MACHINE").exitCode()).isZero();
        }
        assertThat(kept).exists();
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()).machine("q35").drive(state))) {
            assertThat(vm.commandLine()).anyMatch(a -> a.startsWith("virtio-blk-pci,drive=drive-state"));
            assertThat(readStart(vm, disks(vm).get("state"), 13)).isEqualTo("FIRST-MACHINE");
        }
        assertThat(Files.readAllBytes(base)).isEqualTo(baseBefore);
    }

    @Test
    void aFileOneMachineWritesCannotBeGivenToAnother() throws IOException {
        Path shared = disk("shared.raw", 4, "SHARED");
        try (QemuMachine first = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()).drive(Drive.file(shared)))) {
            QemuMachine second = QemuMachine.builder().image(TestGuests.image()).drive(Drive.overlay(shared)).build();
            assertThatThrownBy(second::start).isInstanceOf(LaunchException.class)
                    .hasMessageContaining(shared + " is in use by another machine, and that one writes it");
            assertThat(second.workDir()).doesNotExist();
            assertThat(readStart(first, disks(first).get("disk0"), 6)).isEqualTo("SHARED"); // the first runs on
        }
    }

    @Test
    void aMissingDiskFailsTheStartBeforeQemuRuns() {
        Path missing = dir.resolve("missing.qcow2");
        QemuMachine vm = QemuMachine.builder().image(TestGuests.image()).drive(Drive.overlay(missing).id("root")).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("drive root: overlay over " + missing + ": there is no file " + missing)
                .satisfies(e -> assertThat(((LaunchException) e).commandLine()).isEmpty());
    }

    @Test
    void aRootDiskWithoutAFileSystemEndsTheStartNamingIt() throws IOException {
        Path garbage = disk("garbage.raw", 8, "NOT-A-FILE-SYSTEM");
        QemuMachine vm = QemuMachine.builder().image(TestGuests.image().withCmdline("kiln.root=serial:root").withRootDisk(garbage))
                .readyTimeout(TestGuests.MARKER).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot mount the root file system kiln.root=serial:root")
                .hasMessageNotContaining("Kernel panic"); // the guest resets itself: no backtrace buries the reason
        assertThat(vm.workDir()).doesNotExist();
    }
}
