package dev.kiln.firecracker;

import dev.kiln.Drive;
import dev.kiln.GuestImage;
import dev.kiln.LaunchException;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.image.DefaultImage;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

/**
 * The spec's drives on the real Firecracker: what reaches its API (ids in order, paths, read-only), the raw-only
 * rule, and drives in a jail. No guest boots here (that needs real KVM); {@code GET /vm/config} shows what it would get.
 */
class FirecrackerDrivesTest {
    private static final int NOBODY = 65534;

    @TempDir
    Path dir;

    @BeforeEach
    void needsQemuImg() {
        assumeTrue(Executables.find("qemu-img").isPresent(), "qemu-img is not installed (apt-get install qemu-utils)");
    }

    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft(dir);
    }

    private Path raw(String name, String text) throws IOException {
        Path p = dir.resolve(name);
        try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
            f.setLength(4 << 20);
            f.write(text.getBytes());
        }
        return p;
    }

    private Path qcow2Of(Path raw) {
        Path q = raw.resolveSibling(raw.getFileName() + ".qcow2");
        HostCommand.Result r = HostCommand.run(List.of("qemu-img", "convert", "-q", "-O", "qcow2", raw.toString(), q.toString()),
                null, Duration.ofMinutes(1), "qemu-img convert");
        assertThat(r.ok()).as(r.complaint()).isTrue();
        return q;
    }

    private static FirecrackerMachine.Builder machine() {
        return FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest();
    }

    @Test
    void theDrivesReachFirecrackerInTheSpecsOrderAndAQcow2BaseAsRaw() throws IOException {
        Path readOnly = raw("ro.raw", "READ-ONLY");
        Path base = raw("base.raw", "BASE-CONTENT");
        Path qcow2Base = qcow2Of(base);
        try (FirecrackerMachine vm = machine().drive(Drive.file(readOnly).readOnly().id("ro"))
                .drive(Drive.overlay(qcow2Base).id("system")).drive(Drive.scratch(1 << 20).id("scratch")).build().start()) {
            FullVmConfiguration config = vm.api().getExportVmConfig();
            assertThat(config.drives()).extracting(d -> d.driveId()).containsExactly("ro", "system", "scratch");
            assertThat(config.drives()).extracting(d -> d.isReadOnly()).containsExactly(true, false, false);
            assertThat(config.drives()).extracting(d -> d.isRootDevice()).containsOnly(false);
            // Each by its id, in Firecracker's working directory (the work dir): a user's file through a symlink.
            assertThat(config.drives()).extracting(d -> d.pathOnHost()).containsExactly("drive-ro.raw", "drive-system.raw", "drive-scratch.raw");
            assertThat(Files.readSymbolicLink(vm.hostPathOf("drive-ro.raw"))).isEqualTo(readOnly);
            Path system = vm.hostPathOf(config.drives().get(1).pathOnHost());
            assertThat(system).isEqualTo(vm.workDir().resolve("drive-system.raw"));
            assertThat(Files.readAllBytes(system)).isEqualTo(Files.readAllBytes(base)); // converted from the qcow2 base
            assertThat(vm.hostPathOf(config.drives().get(2).pathOnHost())).hasSize(1 << 20);
        }
    }

    @Test
    void aQcow2FileIsRefusedBeforeFirecrackerStarts() throws IOException {
        Path qcow2 = qcow2Of(raw("disk.raw", "X"));
        FirecrackerMachine vm = machine().drive(Drive.file(qcow2).id("root")).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("drive root: file " + qcow2 + ": Firecracker reads raw disks only, and " + qcow2 + " is qcow2")
                .satisfies(e -> assertThat(((LaunchException) e).commandLine()).isEmpty());
    }

    @Test
    void inAJailKilnsOwnDisksAreHandedOverAndAUsersWritableFileIsNeverCopied() throws IOException {
        Jailer jailer = Jailer.of(NOBODY, NOBODY, dir).withBinary(Binaries.jailer());
        Path readOnly = raw("ro.raw", "READ-ONLY");
        Files.setPosixFilePermissions(readOnly, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
        try (FirecrackerMachine vm = machine().jailer(jailer).drive(Drive.file(readOnly).readOnly().id("ro"))
                .drive(Drive.scratch(1 << 20).id("scratch")).build().start()) {
            FullVmConfiguration config = vm.api().getExportVmConfig();
            assertThat(config.drives()).extracting(d -> d.pathOnHost()).containsExactly("drive-ro.raw", "drive-scratch.raw");
            assertThat(Files.isSameFile(vm.jail().hostPath("drive-ro.raw"), readOnly)).as("linked, not copied").isTrue();
            Path scratch = vm.jail().hostPath("drive-scratch.raw");
            assertThat(Files.getAttribute(scratch, "unix:uid")).isEqualTo(NOBODY);
        }
        Path users = raw("mine.raw", "MINE"); // root's, mode 0644: the jailed uid could only get a copy
        FirecrackerMachine vm = machine().jailer(jailer).drive(Drive.file(users).id("data")).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("the jailed Firecracker (uid 65534) could only get a copy of " + users)
                .hasMessageContaining("what the guest writes would not reach it");
        assertThat(Files.readString(users).substring(0, 4)).isEqualTo("MINE");
    }

    /** Firecracker's disks have no serials that name them: the guest is told the root drive's device by its place. */
    @Test
    void anImagesRootDiskIsTheFirstDriveAndTheGuestIsToldItsDevice() throws IOException {
        Binaries.requireKvmDevice();
        GuestImage image = DefaultImage.get(System.out::println).withRootDisk(raw("rootfs.raw", "ROOT"));
        try (FirecrackerMachine vm = FirecrackerMachine.builder().binary(Binaries.firecracker()).image(image)
                .drive(Drive.scratch(1 << 20).id("data")).kvmCheck(false).readiness().start()) {
            FullVmConfiguration config = vm.api().getExportVmConfig();
            assertThat(config.drives()).extracting(d -> d.driveId()).containsExactly("root", "data");
            assertThat(vm.hostPathOf(config.drives().get(0).pathOnHost())).isEqualTo(vm.workDir().resolve("drive-root.raw"));
            assertThat(config.bootSource().bootArgs()).endsWith("kiln.root=/dev/vda");
        }
        Path own = raw("own-root.raw", "OWN");
        try (FirecrackerMachine vm = FirecrackerMachine.builder().binary(Binaries.firecracker()).image(image)
                .drive(Drive.scratch(1 << 20).id("data")).drive(Drive.overlay(own).id("root")).kvmCheck(false).readiness().start()) {
            FullVmConfiguration config = vm.api().getExportVmConfig();
            assertThat(config.drives()).extracting(d -> d.driveId()).containsExactly("data", "root");
            assertThat(config.bootSource().bootArgs()).endsWith("kiln.root=/dev/vdb");
        }
    }
}
