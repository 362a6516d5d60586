package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.MachineState;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/** Machines that end: from the guest, from the host, with a console log file. */
@ExtendWith(QemuAvailable.class)
class PowerOffTest {
    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void guestShutdownEndsQemuAndAwaitExitCleansUp() throws Exception {
        GuestImage image = DefaultImage.get(System.out::println);
        Path log = Files.createTempFile("kiln-console", ".log");
        try {
            QemuMachine vm = QemuMachine.builder().image(image).consoleLog(log).start();
            vm.guest().awaitReady(Duration.ofSeconds(90));
            Path dir = vm.workDir();
            vm.guest().shutdown();
            assertThat(vm.awaitExit(Duration.ofSeconds(60))).isZero();
            assertThat(vm.state()).isEqualTo(MachineState.EXITED);
            assertThat(dir).doesNotExist();
            assertThat(Files.readString(log)).contains("KILN-READY");
            assertThat(vm.vmmLog()).doesNotContain("terminating on signal");
        } finally {
            Files.deleteIfExists(log);
        }
    }

    @Test
    void hostShutdownIsGraceful() {
        QemuMachine vm = QemuMachine.builder().image(DefaultImage.get(System.out::println)).start();
        vm.console().await("KILN-READY", Duration.ofSeconds(90));
        vm.shutdown(Duration.ofSeconds(30));
        assertThat(vm.exitStatus().orElseThrow().exited()).isTrue();
        assertThat(vm.exitCode()).hasValue(0);
    }

    @Test
    void q35BootsTheSameImageWithPciDevices() {
        try (QemuMachine vm = QemuMachine.builder().image(DefaultImage.get(System.out::println)).machine("q35").start()) {
            assertThat(vm.commandLine()).anyMatch(a -> a.startsWith("virtio-serial-pci"))
                    .noneMatch(a -> a.startsWith("virtio-serial-device"));
            vm.guest().awaitReady(Duration.ofSeconds(120));
            assertThat(vm.guest().exec("sh", "-c", "cat /sys/class/virtio-ports/*/name").stdoutText())
                    .contains(QemuMachine.AGENT_PORT_NAME);
        }
    }

    @Test
    void consoleDeviceTypeAndIndex() {
        // two null serial ports first, then the console on the third ISA serial port: the guest's ttyS2
        try (QemuMachine vm = QemuMachine.builder().image(DefaultImage.get(System.out::println))
                .machine("q35").console("isa-serial", 2).append("console=ttyS2").start()) {
            assertThat(vm.commandLine()).containsSubsequence("-serial", "null", "-serial", "null", "-device",
                    "isa-serial,chardev=console");
            vm.console().await("KILN-READY", Duration.ofSeconds(120));
        }
    }
}
