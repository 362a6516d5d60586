package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.AbnormalShutdownException;
import dev.kiln.GuestImage;
import dev.kiln.MachineState;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.model.Balloon;
import dev.kiln.firecracker.api.model.BalloonStartCmd;
import dev.kiln.firecracker.api.model.BalloonStatsUpdate;
import dev.kiln.firecracker.api.model.BalloonUpdate;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.firecracker.api.model.MemoryHotplugConfig;
import dev.kiln.firecracker.api.model.MemoryHotplugSizeUpdate;
import dev.kiln.image.Vmlinux;
import dev.kiln.image.DefaultImage;
import dev.kiln.os.Affinity;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Set;
import java.util.function.Consumer;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A started instance on a real Firecracker: the default image's kernel (extracted to vmlinux) and initrd,
 * {@code InstanceStart}, then the VMM's post-boot life: pause/resume, snapshots (full, diff, restore),
 * metrics, balloon, hotplug, drive patching, vCPU pinning. On hosts without real KVM (kvm_pvm here) the
 * guest itself does not get far, but Firecracker's state machine and API behave as on any host; whether
 * the guest runs is the business of the boot tests that need real KVM.
 */
class RunningInstanceTest {
    private static Path vmlinux;
    private static GuestImage image;

    @TempDir
    Path tmp;

    /** Skips without a binary (each test shows the reason); builds the image and its vmlinux once. */
    private static synchronized void requireKernel() {
        Binaries.requireKvmDevice();
        if (vmlinux != null) return;
        image = DefaultImage.get(System.out::println);
        vmlinux = Vmlinux.cached(image.kernel(), dev.kiln.support.KilnCache.root().resolve("vmlinux"));
    }

    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    private static MicrovmSetup.BasicConfig basic() {
        return MicrovmSetup.BasicConfig.of(vmlinux, "console=ttyS0 reboot=k panic=1 " + image.cmdline())
                .withInitrd(image.initrd()).withSize(1, 128);
    }

    private static FirecrackerMachine.Builder started(Consumer<FirecrackerMachine> moreConfig) {
        requireKernel();
        return FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest().expectKillBySignal(true).shutdownTimeout(Duration.ofSeconds(2))
                .configure("basic config", m -> m.setup().basicConfig(basic().withTrackDirtyPages(true)))
                .configure("more", moreConfig).instanceStart(true);
    }

    @Test
    void pauseAndResumeFollowTheInstance() {
        try (FirecrackerMachine vm = started(m -> {}).start()) {
            assertThat(vm.instanceState()).isEqualTo(InstanceState.RUNNING);
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            vm.pause();
            assertThat(vm.state()).isEqualTo(MachineState.PAUSED);
            assertThat(vm.instanceState()).isEqualTo(InstanceState.PAUSED);
            vm.resume();
            assertThat(vm.instanceState()).isEqualTo(InstanceState.RUNNING);
            assertThatThrownBy(vm::instanceStart).hasMessageContaining("not Not started");
            vm.kill();
        }
    }

    @Test
    void fullAndDiffSnapshotsAndARestore() throws Exception {
        Path mem = tmp.resolve("full.mem"), state = tmp.resolve("full.vmstate");
        try (FirecrackerMachine vm = started(m -> {}).start()) {
            vm.setup().pauseToSnapshot(mem.toString(), state.toString(), false);
            assertThat(vm.instanceState()).isEqualTo(InstanceState.PAUSED);
            assertThat(Files.size(mem)).isEqualTo(128L << 20);
            vm.resume();
            vm.setup().pauseToSnapshot(tmp.resolve("diff.mem").toString(), tmp.resolve("diff.vmstate").toString(), true);
            assertThat(tmp.resolve("diff.vmstate")).exists();
            vm.kill();
        }
        try (FirecrackerMachine restored = FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest().expectKillBySignal(true)
                .configure("restore", m -> m.setup().restoreFromSnapshot(mem, state, List.of(), false)).start()) {
            assertThat(restored.instanceState()).as("resume_vm: true").isEqualTo(InstanceState.RUNNING);
            assertThat(restored.api().getMachineConfiguration().memSizeMib()).isEqualTo(128);
            restored.kill();
        }
    }

    @Test
    void metricsFlushAfterBoot() {
        try (FirecrackerMachine vm = started(m -> {}).start()) {
            JsonNode first = vm.flushMetrics();
            assertThat(first.path("api_server").isObject()).isTrue();
            assertThat(first.path("vcpu").isObject()).isTrue();
            JsonNode second = vm.flushMetrics();
            assertThat(second.path("utc_timestamp_ms").asLong()).isGreaterThanOrEqualTo(first.path("utc_timestamp_ms").asLong());
            vm.kill();
        }
    }

    /**
     * Balloon and virtio-mem updates need the guest's driver to have activated the device: with real KVM they
     * work, without it Firecracker refuses them with that reason, and Kiln passes the reason on.
     */
    @Test
    void balloonAfterBoot() {
        boolean recent = Binaries.atLeast(1, 14);
        try (FirecrackerMachine vm = started(m -> m.api().putBalloon(new Balloon(16, true, 1, recent ? true : null, null))).start()) {
            FirecrackerApi api = vm.api();
            assertThat(api.describeBalloonStats().targetMib()).isEqualTo(16);
            assertThat(api.describeBalloonConfig().statsPollingIntervalS()).isEqualTo(1);
            if (Binaries.kvmBootable()) {
                api.patchBalloon(new BalloonUpdate(32));
                api.patchBalloonStatsInterval(new BalloonStatsUpdate(2));
                if (recent) {
                    api.startBalloonHinting(new BalloonStartCmd(true));
                    assertThat(api.describeBalloonHinting().hostCmd()).isNotNull();
                    api.stopBalloonHinting();
                }
            } else {
                assertThatThrownBy(() -> api.patchBalloon(new BalloonUpdate(32))).hasMessageMatching("(?s).*(not activated|DeviceNotActive).*");
                if (recent) { // 1.7.0 panics on this one: see firecracker170PanicsOnAStatsUpdateOfAnInactiveBalloon
                    api.patchBalloonStatsInterval(new BalloonStatsUpdate(2));
                    assertThatThrownBy(() -> api.startBalloonHinting(new BalloonStartCmd(true))).hasMessageContaining("not activated");
                    assertThat(api.describeBalloonHinting().hostCmd()).isZero();
                    assertThatThrownBy(api::stopBalloonHinting).hasMessageContaining("not activated");
                }
            }
            vm.kill();
        }
    }

    /** A crash of Firecracker mid-request: Kiln says the API went away, and the machine shows the panic. */
    @Test
    void firecracker170PanicsOnAStatsUpdateOfAnInactiveBalloon() {
        org.junit.jupiter.api.Assumptions.assumeTrue(!Binaries.atLeast(1, 8) && !Binaries.kvmBootable(),
                "only Firecracker 1.7 with a guest that never activated its balloon");
        FirecrackerMachine vm = started(m -> m.api().putBalloon(Balloon.of(16, true, 1))).build().start();
        // Whichever notices first — the call, or the machine's cleanup closing the API as Firecracker dies — the
        // caller learns that the API went away and why.
        assertThatThrownBy(() -> vm.api().patchBalloonStatsInterval(new BalloonStatsUpdate(2)))
                .isInstanceOfAny(dev.kiln.firecracker.api.FirecrackerUnreachableException.class, dev.kiln.MachineClosedException.class)
                .satisfies(e -> assertThat(e.getMessage()).containsAnyOf("PATCH /balloon/statistics", "SIGABRT"));
        assertThat(vm.awaitExit(Duration.ofSeconds(20))).isEqualTo(128 + 6); // SIGABRT from Rust's panic=abort
        assertThat(vm.vmmLog()).contains("Firecracker panicked");
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
    }

    @Test
    void memoryHotplugAfterBoot() {
        org.junit.jupiter.api.Assumptions.assumeTrue(Binaries.atLeast(1, 14), "memory hotplug came with Firecracker 1.14");
        try (FirecrackerMachine vm = started(m -> m.api().putMemoryHotplug(new MemoryHotplugConfig(1024L, null, null))).start()) {
            assertThat(vm.api().getMemoryHotplug().totalSizeMib()).isEqualTo(1024L);
            if (Binaries.kvmBootable()) {
                vm.api().patchMemoryHotplug(new MemoryHotplugSizeUpdate(256L));
                assertThat(vm.api().getMemoryHotplug().requestedSizeMib()).isEqualTo(256L);
            } else {
                assertThatThrownBy(() -> vm.api().patchMemoryHotplug(new MemoryHotplugSizeUpdate(256L)))
                        .hasMessageContaining("not active");
            }
            vm.kill();
        }
    }

    @Test
    void aDriveIsPatchedAfterBoot() throws Exception {
        Path disk = Files.write(tmp.resolve("a.img"), new byte[1 << 16]);
        Path other = Files.write(tmp.resolve("b.img"), new byte[1 << 16]);
        try (FirecrackerMachine vm = started(m -> m.setup().addDrive(Drive.of("scratch", null, false, false), disk)).start()) {
            vm.setup().patchDrive("scratch", other, null);
            assertThat(vm.api().getExportVmConfig().drives().getFirst().pathOnHost()).isEqualTo(other.toString());
            vm.kill();
        }
    }

    @Test
    void vcpuThreadsArePinned() {
        try (FirecrackerMachine vm = started(m -> {}).start()) {
            CpuPinning pinning = vm.cpuPinning();
            assertThat(pinning.threadsNamed("fc_vcpu 0")).hasSize(1);
            pinning.pinVcpu(0, 0);
            assertThat(Affinity.get(pinning.threadsNamed("fc_vcpu 0").getFirst())).isEqualTo(Set.of(0));
            vm.kill();
        }
    }

    @Test
    void aGuestThatIgnoresCtrlAltDelIsKilledAtShutdown() {
        FirecrackerMachine vm = started(m -> {}).build().start();
        assertThatThrownBy(() -> vm.shutdown(Duration.ofMillis(500))).isInstanceOf(AbnormalShutdownException.class)
                .hasMessageContaining("SendCtrlAltDel");
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(vm.isRunning()).isFalse();
    }
}
