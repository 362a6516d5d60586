package dev.kiln.disk;

import dev.kiln.Drive;
import dev.kiln.KilnException;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import dev.kiln.vmm.spi.AttachedDrive;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/** Drives made ready against the real qemu-img: overlays, checks, locks, Firecracker's raw-only rule. */
class PreparedDrivesTest {
    private static final byte[] SIGNATURE = "KILN-BASE-SECTOR".getBytes(StandardCharsets.US_ASCII);

    @TempDir
    Path dir;

    @BeforeAll
    static void needsQemuImg() {
        assumeTrue(Executables.find("qemu-img").isPresent(), "qemu-img is not installed (apt-get install qemu-utils)");
    }

    private Path workDir() throws IOException {
        return Files.createTempDirectory(dir, "work");
    }

    /** A raw disk of {@code mib} MiB with {@link #SIGNATURE} at offset 0. */
    private Path rawBase(String name, int mib) throws IOException {
        Path p = dir.resolve(name);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(mib << 20);
            f.write(SIGNATURE);
        }
        return p;
    }

    private static void qemuImg(String... args) {
        List<String> cmd = new ArrayList<>(List.of("qemu-img"));
        cmd.addAll(List.of(args));
        HostCommand.Result r = HostCommand.run(cmd, null, Duration.ofMinutes(1), "qemu-img");
        assertThat(r.ok()).as("qemu-img %s: %s", String.join(" ", args), r.complaint()).isTrue();
    }

    private static PreparedDrives prepare(Path workDir, boolean rawOnly, Drive... drives) {
        List<Drive> named = new ArrayList<>();
        for (int i = 0; i < drives.length; i++) named.add(drives[i].id().isPresent() ? drives[i] : drives[i].id("disk" + i));
        return PreparedDrives.prepare(named, workDir, rawOnly);
    }

    @Test
    void anOverlayGoesInTheWorkDirReadsItsBaseAndNeverWritesIt() throws IOException {
        Path base = rawBase("base.raw", 8);
        byte[] before = Files.readAllBytes(base);
        Path work = workDir();
        try (PreparedDrives d = prepare(work, false, Drive.overlay(base))) {
            AttachedDrive a = d.attached().getFirst();
            assertThat(a.file().getParent()).isEqualTo(work);
            assertThat(a.format()).isEqualTo(Drive.Format.QCOW2);
            QemuImg.Info info = QemuImg.info(a.file(), Drive.Format.QCOW2);
            assertThat(info.backingFile()).contains(base);
            assertThat(info.virtualSize()).isEqualTo(8L << 20);
            qemuImg("convert", "-O", "raw", a.file().toString(), dir.resolve("flat.raw").toString());
            assertThat(Arrays.copyOf(Files.readAllBytes(dir.resolve("flat.raw")), SIGNATURE.length)).isEqualTo(SIGNATURE);
        }
        assertThat(Files.readAllBytes(base)).isEqualTo(before);
    }

    @Test
    void aKeptOverlayIsMadeOnceReusedAndMustBeOverTheSameBase() throws IOException {
        Path base = rawBase("base.raw", 4);
        Path kept = dir.resolve("vm1.qcow2");
        try (PreparedDrives d = prepare(workDir(), false, Drive.overlay(base, kept))) {
            assertThat(d.attached().getFirst().file()).isEqualTo(kept);
        }
        qemuImg("resize", kept.toString(), "+1M"); // a change only this overlay has: it must survive the next prepare
        try (PreparedDrives d = prepare(workDir(), false, Drive.overlay(base, kept))) {
            assertThat(QemuImg.info(d.attached().getFirst().file(), Drive.Format.QCOW2).virtualSize()).isEqualTo(5L << 20);
        }
        Path other = rawBase("other.raw", 4);
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.overlay(other, kept)))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("disk0").hasMessageContaining(kept + " exists but is not an overlay over " + other)
                .hasMessageContaining("its base: " + base);
        assertThat(dir.toFile().list()).noneMatch(n -> n.contains(".kiln-")); // no partial file left behind
    }

    @Test
    void aMissingFileFailsNamingTheDriveAndThePath() {
        Path nowhere = dir.resolve("no-such.raw");
        assertThatThrownBy(() -> prepare(dir, false, Drive.file(nowhere).id("data")))
                .isInstanceOf(KilnException.class).hasMessageStartingWith("drive data: file " + nowhere + ": ")
                .hasMessageContaining("there is no file " + nowhere);
        assertThatThrownBy(() -> prepare(dir, false, Drive.overlay(nowhere)))
                .hasMessageContaining("there is no file " + nowhere);
    }

    @Test
    void aCorruptQcow2FailsWithQemuImgsWords() throws IOException {
        Path good = dir.resolve("good.qcow2");
        qemuImg("create", "-q", "-f", "qcow2", good.toString(), "4M");
        Path bad = dir.resolve("bad.qcow2");
        Files.copy(good, bad);
        try (RandomAccessFile f = new RandomAccessFile(bad.toFile(), "rw")) {
            f.seek(20); // cluster_bits
            f.writeInt(99);
        }
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(bad)))
                .isInstanceOf(KilnException.class).hasMessageContaining("qemu-img cannot read " + bad)
                .hasMessageContaining("Unsupported cluster size");
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.overlay(bad)))
                .hasMessageContaining("Unsupported cluster size");

        Path headerless = dir.resolve("headerless.qcow2"); // the magic gone: qemu-img would take it for raw
        Files.copy(good, headerless);
        try (RandomAccessFile f = new RandomAccessFile(headerless.toFile(), "rw")) {
            f.write(new byte[4]);
        }
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(headerless)))
                .hasMessageContaining("is named .qcow2 but qemu-img finds no qcow2 header in it (it reads as raw)");
        try (PreparedDrives d = prepare(workDir(), false, Drive.file(headerless).format(Drive.Format.RAW))) {
            assertThat(d.attached().getFirst().format()).isEqualTo(Drive.Format.RAW); // said so: taken as raw
        }
    }

    @Test
    void aQcow2WithCorruptMetadataFailsTheCheck() throws IOException {
        Path img = dir.resolve("refcounts.qcow2");
        qemuImg("convert", "-q", "-f", "raw", "-O", "qcow2", rawBase("data.raw", 4).toString(), img.toString());
        long refcountTable;
        try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
            f.seek(48);
            refcountTable = f.readLong();
            f.seek(refcountTable);
            long refcountBlock = f.readLong();
            f.seek(refcountBlock); // every cluster's refcount to 0: clusters in use that count as free
            f.write(new byte[64]);
        }
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(img)))
                .isInstanceOf(KilnException.class).hasMessageContaining(img + " is corrupt; qemu-img check says:\n")
                .hasMessageContaining("ERROR");
    }

    @Test
    void aFileOneMachineWritesIsNotUsedByAnother() throws IOException {
        Path disk = rawBase("shared.raw", 4);
        try (PreparedDrives writer = prepare(workDir(), false, Drive.file(disk))) {
            assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(disk)))
                    .isInstanceOf(KilnException.class).hasMessageContaining(disk + " is in use by another machine, and this one would write it");
            assertThatThrownBy(() -> prepare(workDir(), false, Drive.overlay(disk)))
                    .hasMessageContaining(disk + " is in use by another machine, and that one writes it");
            assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(disk).readOnly()))
                    .hasMessageContaining("that one writes it");
        }
        try (PreparedDrives reader1 = prepare(workDir(), false, Drive.file(disk).readOnly());
             PreparedDrives reader2 = prepare(workDir(), false, Drive.overlay(disk))) {
            assertThat(reader1.attached()).hasSize(1);
            assertThat(reader2.attached()).hasSize(1);
            assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(disk))).hasMessageContaining("this one would write it");
        }
        try (PreparedDrives again = prepare(workDir(), false, Drive.file(disk))) {
            assertThat(again.attached().getFirst().readOnly()).isFalse();
        }
    }

    @Test
    void aFailedPrepareReleasesWhatItLocked() throws IOException {
        Path disk = rawBase("first.raw", 4);
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(disk), Drive.file(dir.resolve("missing.raw"))))
                .hasMessageContaining("drive disk1");
        try (PreparedDrives d = prepare(workDir(), false, Drive.file(disk))) {
            assertThat(d.attached()).hasSize(1);
        }
    }

    @Test
    void forFirecrackerAQcow2FileIsRefusedAndAQcow2BaseIsConvertedToRaw() throws IOException {
        Path raw = rawBase("content.raw", 4);
        Path qcow2 = dir.resolve("content.qcow2");
        qemuImg("convert", "-q", "-f", "raw", "-O", "qcow2", raw.toString(), qcow2.toString());
        assertThatThrownBy(() -> prepare(workDir(), true, Drive.file(qcow2)))
                .isInstanceOf(KilnException.class).hasMessageContaining("Firecracker reads raw disks only, and " + qcow2 + " is qcow2");
        Path work = workDir();
        try (PreparedDrives d = prepare(work, true, Drive.overlay(qcow2), Drive.overlay(raw))) {
            for (AttachedDrive a : d.attached()) {
                assertThat(a.format()).isEqualTo(Drive.Format.RAW);
                assertThat(a.file().getParent()).isEqualTo(work);
                assertThat(QemuImg.info(a.file(), null).formatName()).isEqualTo("raw");
                assertThat(Files.readAllBytes(a.file())).isEqualTo(Files.readAllBytes(raw));
            }
        }
    }

    @Test
    void aScratchDiskIsSparseAndOfItsSize() throws IOException {
        Path work = workDir();
        try (PreparedDrives d = prepare(work, false, Drive.scratch(256L << 20).id("scratch"))) {
            AttachedDrive a = d.attached().getFirst();
            assertThat(a).isEqualTo(new AttachedDrive("scratch", work.resolve("drive-scratch.raw"), Drive.Format.RAW, false));
            assertThat(Files.size(a.file())).isEqualTo(256L << 20);
            assertThat(QemuImg.info(a.file(), null).formatName()).isEqualTo("raw");
            HostCommand.Result blocks = HostCommand.run(List.of("stat", "-c", "%b", a.file().toString()), null, Duration.ofSeconds(10), "stat");
            assertThat(Long.parseLong(blocks.stdout().strip())).as("512-byte blocks allocated").isLessThan(64);
        }
    }

    @Test
    void aFormatKilnDoesNotAttachIsNamed() throws IOException {
        Path vmdk = dir.resolve("disk.vmdk");
        qemuImg("create", "-q", "-f", "vmdk", vmdk.toString(), "4M");
        assertThatThrownBy(() -> prepare(workDir(), false, Drive.file(vmdk)))
                .hasMessageContaining("qemu-img finds a vmdk image in " + vmdk + "; Kiln attaches raw and qcow2 disks");
    }
}
