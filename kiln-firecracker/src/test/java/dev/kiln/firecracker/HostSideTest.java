package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.firecracker.api.FirecrackerApiException;
import dev.kiln.firecracker.api.model.NetworkInterface;
import dev.kiln.firecracker.api.model.PartialNetworkInterface;
import dev.kiln.firecracker.api.model.RateLimiter;
import dev.kiln.firecracker.api.model.TokenBucket;
import dev.kiln.firecracker.net.Ipv4Allocator;
import dev.kiln.firecracker.net.NetworkNamespace;
import dev.kiln.os.Affinity;
import dev.kiln.support.Executables;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The host side against a real Firecracker: taps in a namespace, CPU pinning, vsock, memory monitor. */
class HostSideTest {
    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    private static FirecrackerMachine.Builder machine() {
        return FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest();
    }

    @Test
    void aNetworkInterfaceOnATapInANamespace() {
        Binaries.firecracker();
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")) && Executables.find("ip").isPresent(),
                "network namespaces and taps need root and iproute2's ip");
        Ipv4Allocator addresses = new Ipv4Allocator();
        Ipv4Allocator.Subnet subnet = addresses.next();
        try (NetworkNamespace ns = NetworkNamespace.create(LeakCheck.ID_PREFIX + "net")) {
            String tap = ns.addTap("kilntap0", subnet.hostCidr());
            assertThat(ns.exec("ip", "-o", "addr", "show", "dev", tap)).contains(subnet.hostCidr());
            RateLimiter limiter = new RateLimiter(TokenBucket.of(1 << 20, 100), null);
            try (FirecrackerMachine vm = machine().netns(ns).build().start()) {
                assertThat(vm.commandLine()).contains("netns", ns.name());
                vm.setup().addNetworkInterface("eth0", tap, subnet.guestMac(), limiter, limiter);
                NetworkInterface iface = vm.api().getExportVmConfig().networkInterfaces().getFirst();
                assertThat(iface.hostDevName()).isEqualTo(tap);
                assertThat(iface.guestMac()).isEqualToIgnoringCase("06:00:C0:A8:00:02");
                assertThat(iface.rxRateLimiter().bandwidth().size()).isEqualTo(1L << 20);
                // Rate limiters change after boot only.
                assertThatThrownBy(() -> vm.api().patchGuestNetworkInterfaceByID(new PartialNetworkInterface("eth0", null, limiter)))
                        .isInstanceOf(FirecrackerApiException.class);
            }
        }
    }

    @Test
    void threadsArePinnedByName() {
        try (FirecrackerMachine vm = machine().build().start()) {
            CpuPinning pinning = vm.cpuPinning();
            int last = Runtime.getRuntime().availableProcessors() - 1;
            pinning.pinVmm(0);
            pinning.pinApi(last);
            long pid = vm.pid().orElseThrow();
            assertThat(Affinity.get(pid)).containsExactly(0);
            assertThat(pinning.threadsNamed("fc_api")).hasSize(1).allSatisfy(tid -> assertThat(Affinity.get(tid)).containsExactly(last));
            assertThatThrownBy(() -> pinning.pinVcpu(0, 0)).isInstanceOf(KilnException.class)
                    .hasMessageContaining("fc_vcpu 0").hasMessageContaining("once the guest was started");
        }
    }

    @Test
    void affinityOfAnyProcess() throws Exception {
        Process sleeper = new ProcessBuilder("sleep", "30").start();
        try {
            Affinity.set(sleeper.pid(), Set.of(0));
            assertThat(Affinity.get(sleeper.pid())).containsExactly(0);
            assertThatThrownBy(() -> Affinity.set(sleeper.pid(), Set.of())).hasMessageContaining("at least one CPU");
            assertThatThrownBy(() -> Affinity.set(sleeper.pid(), Set.of(5000))).hasMessageContaining("outside");
        } finally {
            sleeper.destroyForcibly();
            sleeper.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void vsockBeforeBootFailsClearlyAndInTime() {
        try (FirecrackerMachine vm = machine().build().start()) {
            Path uds = vm.workDir().resolve("v.sock");
            vm.setup().addVsock(3, uds.toString());
            assertThat(Files.exists(uds)).as("Firecracker binds the vsock socket when the device is configured").isTrue();
            long t0 = System.nanoTime();
            assertThatThrownBy(() -> VsockDialer.dial(uds, 52, Duration.ofSeconds(2))).isInstanceOf(KilnException.class)
                    .hasMessageContaining("CONNECT 52");
            assertThat(Duration.ofNanos(System.nanoTime() - t0)).as("bounded by the timeout").isLessThan(Duration.ofSeconds(30));
        }
    }

    @Test
    void theMemoryMonitorSamplesTheVmm() throws Exception {
        try (FirecrackerMachine vm = machine().memoryMonitor(64, Duration.ofMillis(20)).build().start()) {
            // Firecracker with no guest uses a few MiB: far below 128 MiB of guest memory + 64.
            MemoryMonitor strict = MemoryMonitor.start(vm.pid().orElseThrow(), () -> 0, 0, Duration.ofMillis(10), "strict");
            Thread.sleep(200);
            strict.stop();
            assertThat(strict.samples()).isPositive();
            assertThat(strict.maxRssKib()).isPositive();
            assertThat(strict.exceedances()).as("RSS > 0 MiB of guest + 0 MiB threshold").isNotEmpty()
                    .first().asString().contains("exceeds guest memory 0 MiB");
        }
    }
}
