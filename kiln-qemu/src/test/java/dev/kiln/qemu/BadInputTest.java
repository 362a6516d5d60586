package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineState;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Bad input gets a clear exception, never a hang, and leaves nothing behind. (A QMP peer sending garbage or
 * closing mid-reply: {@link QmpProtocolTest}; an agent's wrong sync id: QgaGuestTest; a missing command in
 * the guest: {@link BootTest}.)
 */
@ExtendWith(QemuAvailable.class)
class BadInputTest {
    @TempDir Path tmp;

    static final GuestImage IMAGE = DefaultImage.get(System.out::println);

    @AfterEach
    void noneLeft() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void aMissingKernelIsRefusedBeforeAnythingStarts() {
        QemuMachine vm = QemuMachine.builder().kernel(tmp.resolve("no-such-vmlinuz"), IMAGE.initrd()).build();
        assertThatThrownBy(vm::start).isInstanceOf(KilnException.class)
                .hasMessageContaining("kernel not found").hasMessageContaining("no-such-vmlinuz");
        assertThat(vm.state()).isEqualTo(MachineState.FAILED);
        assertThat(vm.workDir()).as("checked before a work dir was made").isNull();
        assertThat(vm.commandLine()).as("checked before QEMU was spawned").isEmpty();
    }

    @Test
    void anUnreadableKernelIsRefused() throws Exception {
        Path dir = Files.createDirectory(tmp.resolve("vmlinuz-dir")); // readable by no one as a file, root included
        assertThatThrownBy(() -> QemuMachine.builder().kernel(dir, IMAGE.initrd()).start())
                .isInstanceOf(KilnException.class).hasMessageContaining("kernel is not a regular file");
    }

    @Test
    void aKernelThatIsNotAKernelFailsTheLaunchWithQemusWords() throws Exception {
        Path garbage = tmp.resolve("garbage-kernel");
        byte[] bytes = new byte[64 << 10];
        new Random(1).nextBytes(bytes);
        Files.write(garbage, bytes);
        assertThatThrownBy(() -> QemuMachine.builder().kernel(garbage, IMAGE.initrd()).start())
                .isInstanceOfSatisfying(LaunchException.class, e -> {
                    assertThat(e.exitCode()).isNotNull().isNotZero();
                    assertThat(e.vmmOutput()).isNotBlank();
                    assertThat(e.getMessage()).contains("QEMU launch of");
                });
    }

    @Test
    void anInitrdThatIsNotAnArchiveIsRefused() throws Exception {
        Path initrd = Files.writeString(tmp.resolve("initrd.txt"), "this is not an initramfs\n");
        assertThatThrownBy(() -> QemuMachine.builder().kernel(IMAGE.kernel(), initrd).start())
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("is not an initramfs").hasMessageContaining("74 68 69 73"); // "this"
    }

    @Test
    void memoryOfZeroOrAbsurdSizeIsRefused() {
        assertThatThrownBy(() -> QemuMachine.builder().memoryMib(0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("memoryMib must be positive");
        assertThatThrownBy(() -> QemuMachine.builder().memoryMib(Integer.MAX_VALUE).build())
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("more than 4 TiB");
        // Within QEMU's limits but far beyond this host: QEMU cannot allocate it, and says so.
        assertThatThrownBy(() -> QemuMachine.builder().image(IMAGE).memoryMib(4 << 20).start())
                .isInstanceOfSatisfying(LaunchException.class, e ->
                        assertThat(e.getMessage() + e.vmmOutput()).contains("cannot set up guest memory"));
    }

    @Test
    void anUnknownMachineTypeFailsTheLaunchNamingIt() {
        assertThatThrownBy(() -> QemuMachine.builder().image(IMAGE).machine("no-such-machine").start())
                .isInstanceOfSatisfying(LaunchException.class, e -> {
                    assertThat(e.vmmOutput()).contains("unsupported machine type");
                    assertThat(e.commandLine()).contains("no-such-machine");
                });
    }

    @Test
    void aBadExtraOptionFailsTheLaunchWithQemusWords() {
        assertThatThrownBy(() -> QemuMachine.builder().image(IMAGE).args("-device", "no-such-device").start())
                .isInstanceOfSatisfying(LaunchException.class, e -> assertThat(e.vmmOutput()).contains("no-such-device"));
    }
}
