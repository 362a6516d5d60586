package dev.kiln.firecracker;

import dev.kiln.GuestImage;
import dev.kiln.MachineState;
import dev.kiln.image.Vmlinux;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * The default image booting under Firecracker to its ready marker on the serial console, and a graceful
 * shutdown through Ctrl-Alt-Del. Needs real KVM: skipped (with that reason) on kvm_pvm hosts.
 */
class GuestBootTest {
    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void theDefaultImageBootsToItsMarkerAndShutsDownGracefully() {
        Binaries.requireBootableKvm();
        GuestImage image = DefaultImage.get(System.out::println);
        Path vmlinux = Vmlinux.cached(image.kernel(), dev.kiln.support.KilnCache.root().resolve("vmlinux"));
        FirecrackerMachine vm = FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest()
                .configure("basic config", m -> m.setup().basicConfig(MicrovmSetup.BasicConfig
                        .of(vmlinux, "console=ttyS0 reboot=k panic=1 " + image.cmdline()).withInitrd(image.initrd()).withSize(1, 256)))
                .instanceStart(true).build();
        try (vm) {
            vm.start();
            vm.console().await(Pattern.compile(Pattern.quote(image.readyMarker())), Duration.ofSeconds(60));
            vm.shutdown(Duration.ofSeconds(30)); // SendCtrlAltDel: the guest reboots, and Firecracker exits on reboot
        }
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(vm.exitCode()).hasValue(0);
    }

    /** The same image and the same Guest API as on QEMU: the agent answers over vsock. */
    @Test
    void guestExecWorksUnchangedOverVsock() {
        Binaries.requireBootableKvm();
        try (FirecrackerMachine vm = FirecrackerMachine.builder().binary(Binaries.firecracker())
                .image(DefaultImage.get(System.out::println)).memoryMib(256).start()) {
            vm.guest().awaitReady(Duration.ofSeconds(60));
            assertThat(vm.guest().exec("uname", "-r").stdoutText()).contains("cloud-amd64");
        }
    }

    /**
     * What can be checked without KVM: the image's configuration reaches Firecracker (boot args naming the
     * vsock agent, the initrd, the vsock device) and the instance starts.
     */
    @Test
    void theImageConfigurationReachesFirecracker() {
        Binaries.requireKvmDevice();
        String bin = Binaries.firecracker();
        GuestImage image = DefaultImage.get(System.out::println);
        try (FirecrackerMachine vm = FirecrackerMachine.builder().binary(bin).image(image).memoryMib(128)
                .kvmCheck(false).readiness().start()) {
            var config = vm.api().getExportVmConfig();
            assertThat(config.bootSource().bootArgs()).contains("kiln.agent=vsock").contains("kiln.agent_port=1024")
                    .contains(image.cmdline());
            assertThat(config.bootSource().initrdPath()).isNotBlank();
            assertThat(config.vsock().guestCid()).isEqualTo(3);
            assertThat(config.machineConfig().memSizeMib()).isEqualTo(128);
        }
    }
}
