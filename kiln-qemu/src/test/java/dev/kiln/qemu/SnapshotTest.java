package dev.kiln.qemu;

import dev.kiln.Drive;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.MachineState;
import dev.kiln.Snapshot;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.FileTime;
import java.time.Duration;
import java.time.Instant;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Snapshots of real guests: clones that go on from the saved instant, each on its own, while the original runs on; a
 * restore in a later process from the directory alone; and restores refused before QEMU starts when anything differs.
 */
@ExtendWith(QemuAvailable.class)
class SnapshotTest {
    @TempDir
    static Path dir;
    private static Path readOnlyDisk;
    private static MachineSpec spec;
    private static Snapshot snapshot;

    /** One snapshot for the class: a guest with state in memory (/tmp is RAM), on a written disk and a read-only one. */
    @BeforeAll
    static void takeSnapshot() throws IOException {
        readOnlyDisk = dir.resolve("reference.raw");
        try (RandomAccessFile f = new RandomAccessFile(readOnlyDisk.toFile(), "rw")) {
            f.setLength(4 << 20);
            f.write("REFERENCE".getBytes());
        }
        spec = QemuMachine.builder().image(TestGuests.image()).readyTimeout(TestGuests.MARKER)
                .drive(Drive.scratch(8 << 20).id("data")).drive(Drive.file(readOnlyDisk).readOnly().id("ref")).spec();
        try (Machine original = QemuMachine.create(spec).start()) {
            original.guest().succeed("echo in-memory > /tmp/state && printf ON-DISK | dd of=" + device("data") + " conv=fsync 2>/dev/null");
            // An hour behind when saved: a restore that did not set the clock would show it.
            original.guest().succeed("date -u -s @" + (Instant.now().getEpochSecond() - 3600) + " >/dev/null");
            snapshot = original.snapshot(dir.resolve("snap"));
            assertThat(original.state()).as("the original runs on").isEqualTo(MachineState.RUNNING);
            original.guest().succeed("echo changed > /tmp/state");
            assertThat(original.guest().succeed("cat /tmp/state")).isEqualTo("changed\n");
        }
    }

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    /** The guest's device for the disk with serial {@code id}, as a shell expression. */
    private static String device(String id) {
        return "/dev/$(for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = " + id + " ] && echo ${b##*/}; done)";
    }

    @Test
    void twoClonesGoOnFromTheSavedInstantEachOnItsOwn() {
        try (Machine a = snapshot.restore(); Machine b = snapshot.restore()) {
            for (Machine clone : new Machine[] {a, b}) {
                assertThat(clone.guest().succeed("cat /tmp/state")).isEqualTo("in-memory\n");
                assertThat(clone.guest().succeed("dd if=" + device("data") + " bs=7 count=1 2>/dev/null")).isEqualTo("ON-DISK");
                assertThat(clone.guest().succeed("dd if=" + device("ref") + " bs=9 count=1 2>/dev/null")).isEqualTo("REFERENCE");
                long guestClock = Long.parseLong(clone.guest().succeed("date +%s").strip());
                assertThat(guestClock).as("the restored guest's clock, set from the host's").isBetween(Instant.now().getEpochSecond() - 2, Instant.now().getEpochSecond() + 2);
            }
            a.guest().succeed("echo clone-a > /tmp/state && printf CLONE-A | dd of=" + device("data") + " conv=fsync 2>/dev/null");
            assertThat(b.guest().succeed("cat /tmp/state")).isEqualTo("in-memory\n");
            assertThat(b.guest().succeed("dd if=" + device("data") + " bs=7 count=1 2>/dev/null")).isEqualTo("ON-DISK");
            assertThat(a.as(QemuMachine.class).commandLine()).contains("-incoming");
            assertThat(a.transitions().getFirst().reason()).isEqualTo("startFrom(snapshot in " + snapshot.dir() + ")");
        }
        // a later process has only the directory, and the spec it was taken with
        try (Machine later = Snapshot.open(snapshot.dir()).restore(spec)) {
            assertThat(later.guest().succeed("cat /tmp/state")).isEqualTo("in-memory\n");
            assertThat(later.guest().succeed("dd if=" + device("data") + " bs=7 count=1 2>/dev/null")).isEqualTo("ON-DISK");
        }
    }

    @Test
    void aRestoreIsRefusedBeforeQemuStartsWhenTheMachineDiffers() throws IOException {
        MachineSpec bigger = spec.toBuilder().memoryMib(spec.memoryMib() * 2).build();
        assertThatThrownBy(() -> snapshot.restore(bigger)).isInstanceOf(LaunchException.class)
                .hasMessageContaining("cannot restore the snapshot in " + snapshot.dir())
                .hasMessageContaining("memoryMib was " + spec.memoryMib() + ", and is now " + spec.memoryMib() * 2)
                .satisfies(e -> assertThat(((LaunchException) e).commandLine()).isEmpty());
        MachineSpec otherDisks = spec.toBuilder().noDrives().drive(Drive.scratch(8 << 20).id("data")).build();
        assertThatThrownBy(() -> snapshot.restore(otherDisks)).hasMessageContaining("drives was data,ref, and is now data");
        Path elsewhere = dir.resolve("another-reference.raw");
        Files.copy(readOnlyDisk, elsewhere, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
        MachineSpec otherFile = spec.toBuilder().noDrives().drive(Drive.scratch(8 << 20).id("data"))
                .drive(Drive.file(elsewhere).readOnly().id("ref")).build();
        assertThatThrownBy(() -> snapshot.restore(otherFile))
                .hasMessageContaining("drive.ref.source was " + readOnlyDisk + ", and is now " + elsewhere);
    }

    @Test
    void aChangedOrMissingFileOrAnotherQemuIsFoundBeforeQemuStarts() throws IOException {
        Path copy = dir.resolve("copy");
        copyTree(snapshot.dir(), copy);
        Path info = copy.resolve(Snapshot.INFO);
        Files.writeString(info, Files.readString(info).replaceFirst("vmm.version=[^\\n]*", "vmm.version=QEMU emulator version 1.0"));
        assertThatThrownBy(() -> Snapshot.open(copy).restore(spec)).hasMessageContaining("vmm.version was QEMU emulator version 1.0, and is now QEMU emulator version");

        copyTree(snapshot.dir(), copy);
        Files.delete(copy.resolve("drive-data.raw"));
        assertThatThrownBy(() -> Snapshot.open(copy).restore(spec)).hasMessageContaining("drive data: its copy " + copy.resolve("drive-data.raw") + " is missing");

        FileTime was = Files.getLastModifiedTime(readOnlyDisk);
        try {
            Files.setLastModifiedTime(readOnlyDisk, FileTime.from(was.toInstant().plusSeconds(60)));
            assertThatThrownBy(() -> snapshot.restore()).hasMessageContaining("drive ref: " + readOnlyDisk + " has changed since the snapshot was taken");
        } finally {
            Files.setLastModifiedTime(readOnlyDisk, was);
        }
        assertThatThrownBy(() -> Snapshot.open(dir.resolve("nothing-here"))).isInstanceOf(KilnException.class)
                .hasMessageContaining("holds no snapshot");
    }

    @Test
    void aTruncatedStateFailsTheRestoreWithQemusReason() throws IOException {
        Path copy = dir.resolve("truncated");
        copyTree(snapshot.dir(), copy);
        try (RandomAccessFile f = new RandomAccessFile(copy.resolve(Snapshot.STATE).toFile(), "rw")) {
            f.setLength(f.length() / 2);
        }
        Machine vm = QemuMachine.create(spec);
        assertThatThrownBy(() -> vm.startFrom(Snapshot.open(copy))).isInstanceOf(LaunchException.class)
                .hasMessageContaining("migrate-incoming").hasMessageContaining("load of migration failed");
        assertThat(vm.workDir()).doesNotExist();
    }

    @Test
    void aMachineWithADeviceThatBlocksMigrationIsNotSavedAndRunsOn() {
        // QEMU's virtio-crypto cannot be migrated: its state would be lost.
        MachineSpec blocked = QemuMachine.builder().from(spec.toBuilder().noDrives().build())
                .args("-object", "cryptodev-backend-builtin,id=crypto0", "-device", "virtio-crypto-device,cryptodev=crypto0").spec();
        try (Machine vm = QemuMachine.create(blocked).start()) {
            Path target = dir.resolve("blocked");
            assertThatThrownBy(() -> vm.snapshot(target)).isInstanceOf(KilnException.class)
                    .hasMessageContaining("State blocked by non-migratable device").hasMessageContaining("virtio-crypto");
            assertThat(target).doesNotExist();
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            assertThat(vm.guest().succeed("echo still-here")).isEqualTo("still-here\n");
        }
    }

    @Test
    void aSnapshotNeedsADirectoryOfItsOwn() {
        try (Machine vm = QemuMachine.create(spec.toBuilder().noDrives().build()).start()) {
            assertThatThrownBy(() -> vm.snapshot(snapshot.dir())).hasMessageContaining(snapshot.dir() + " is not empty");
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
        }
    }

    private static void copyTree(Path from, Path to) throws IOException {
        if (Files.exists(to)) {
            try (var files = Files.list(to)) {
                for (Path f : files.toList()) Files.delete(f);
            }
        }
        Files.createDirectories(to);
        try (var files = Files.list(from)) {
            for (Path f : files.toList()) Files.copy(f, to.resolve(f.getFileName()));
        }
    }
}
