package dev.kiln.qemu;

import dev.kiln.Backend;
import dev.kiln.ExecResult;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.Share;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Host directories in Kiln's default guest over virtio-fs: both ways, read-only, and what is refused. */
@ExtendWith(QemuAvailable.class)
class SharesTest {
    @TempDir
    Path dir;

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft(); // virtiofsd included
    }

    @Test
    void aWritableShareIsSeenAndWrittenBothWaysAndAReadOnlyOneRefusesWrites() throws IOException {
        Path rw = Files.createDirectories(dir.resolve("src,with a comma")), ro = Files.createDirectories(dir.resolve("data"));
        Files.writeString(rw.resolve("from-host.txt"), "written on the host\n");
        Files.writeString(ro.resolve("input.txt"), "read me\n");
        Path workDir;
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()).share(rw, "/mnt/src")
                .share(ro, "/mnt/data", true))) {
            workDir = vm.workDir();
            assertThat(vm.commandLine()).anyMatch(a -> a.startsWith("vhost-user-fs-device,chardev=fs0,tag=kiln-share0"));
            assertThat(vm.guest().exec("cat", "/mnt/src/from-host.txt").orThrow().stdoutText()).isEqualTo("written on the host\n");
            vm.guest().succeed("echo written in the guest > /mnt/src/from-guest.txt");
            assertThat(rw.resolve("from-guest.txt")).hasContent("written in the guest");

            assertThat(vm.guest().exec("cat", "/mnt/data/input.txt").orThrow().stdoutText()).isEqualTo("read me\n");
            ExecResult refused = vm.guest().exec("sh", "-c", "echo x > /mnt/data/new.txt");
            assertThat(refused.exitCode()).isNotZero();
            assertThat(refused.stderrText()).contains("Read-only file system");
            assertThat(ro.resolve("new.txt")).doesNotExist();
            assertThat(vm.guest().exec("grep", " /mnt/data ", "/proc/mounts").orThrow().stdoutText()).contains("virtiofs", "ro");
            // The host refuses too: the guest's root remounting it read-write gains nothing.
            vm.guest().succeed("mount -o remount,rw /mnt/data");
            assertThat(vm.guest().exec("grep", " /mnt/data ", "/proc/mounts").orThrow().stdoutText()).contains(" rw,");
            ExecResult remounted = vm.guest().exec("sh", "-c", "echo x > /mnt/data/new.txt");
            assertThat(remounted.exitCode()).as(remounted.toString()).isNotZero();
            assertThat(remounted.stderrText()).contains("Read-only file system");
            assertThat(ro.resolve("new.txt")).doesNotExist();
        }
        assertThat(workDir).doesNotExist();
    }

    @Test
    void theCVirtiofsdServesAReadOnlyShareFromAReadOnlyBindMount() throws IOException {
        Path echo = Path.of("/bin/echo"); // says no --shared-dir to --help: the C daemon's options
        Path folder = Files.createDirectories(dir.resolve("a,b"));
        List<String> ro = Virtiofsd.command(echo, new Share(folder, "/mnt/x", true, Share.Transport.VIRTIOFS), 3);
        assertThat(ro.subList(0, 5)).containsExactly("unshare", "--mount", "--propagation", "private", "--");
        assertThat(ro).containsSubsequence("kiln-read-only", folder.toString(), "/bin/echo", "--fd=3", "-o",
                "source=" + dir.resolve("a\\,b"));
        List<String> rw = Virtiofsd.command(echo, new Share(folder, "/mnt/x", false, Share.Transport.VIRTIOFS), 3);
        assertThat(rw.getFirst()).isEqualTo("/bin/echo");
    }

    @Test
    void aMissingDirectoryFailsBeforeAnythingStarts() {
        Path missing = dir.resolve("nowhere");
        assertThatThrownBy(() -> QemuMachine.builder().image(TestGuests.image()).share(missing, "/mnt/x").build().start())
                .isInstanceOf(KilnException.class).hasMessageContaining(missing + " is not a directory").hasMessageContaining("does not exist");
        assertThat(LeakCheck.leftovers()).isEmpty();
    }

    @Test
    void withoutVirtiofsdTheMessageSaysWhatToInstall() {
        assertThatThrownBy(() -> Virtiofsd.find(null, Optional.empty(), List.of(dir.resolve("virtiofsd").toString())))
                .isInstanceOf(KilnException.class).hasMessageContaining("virtio-fs needs virtiofsd")
                .hasMessageContaining("apt-get install virtiofsd").hasMessageContaining("NINE_P");
    }

    @Test
    void firecrackerRefusesAWritableShareAndAnyOtherTransport() {
        assertThatThrownBy(() -> MachineSpec.builder().backend(Backend.FIRECRACKER).share(dir, "/mnt/x").build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("a writable one cannot be had");
        assertThatThrownBy(() -> MachineSpec.builder().backend(Backend.FIRECRACKER)
                .share(new Share(dir, "/mnt/x", true, Share.Transport.NINE_P)).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("Firecracker has no virtio-fs nor 9p");
        assertThat(MachineSpec.builder().backend(Backend.FIRECRACKER).share(dir, "/mnt/x", true).build().shares()).hasSize(1);
    }
}
