package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.WaitTimeoutException;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineClosedException;
import dev.kiln.MachineState;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.FirecrackerApiException;
import dev.kiln.firecracker.api.model.Balloon;
import dev.kiln.firecracker.api.model.BalloonStartCmd;
import dev.kiln.firecracker.api.model.BootSource;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.EntropyDevice;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.api.model.MachineConfiguration;
import dev.kiln.firecracker.api.model.MemoryHotplugConfig;
import dev.kiln.firecracker.api.model.MetricsConfig;
import dev.kiln.firecracker.api.model.MmdsConfig;
import dev.kiln.firecracker.api.model.Pmem;
import dev.kiln.firecracker.api.model.RateLimiter;
import dev.kiln.firecracker.api.model.SerialDevice;
import dev.kiln.firecracker.api.model.SnapshotCreateParams;
import dev.kiln.firecracker.api.model.TokenBucket;
import dev.kiln.firecracker.api.model.Vm;
import dev.kiln.firecracker.api.model.Vsock;
import dev.kiln.os.Posix;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A real Firecracker ({@code FIRECRACKER_BIN}): its API server, process lifecycle, FIFOs and error bodies.
 * No guest boots here (that needs real KVM): everything a VMM does before and around a guest is tested.
 */
class FirecrackerMachineTest {
    private static final Duration WAIT = Duration.ofSeconds(20);

    @TempDir
    Path tmp;

    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft();
    }

    private static FirecrackerMachine.Builder machine() {
        return FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest();
    }

    @Test
    void startsAnswersAndStops() {
        FirecrackerMachine vm = machine().build();
        assertThat(vm.state()).isEqualTo(MachineState.NEW);
        try (vm) {
            vm.start();
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            assertThat(vm.isRunning()).isTrue();
            assertThat(vm.pid()).isPresent();
            var info = vm.api().describeInstance();
            assertThat(info.id()).isEqualTo(vm.id());
            assertThat(info.state()).isEqualTo(InstanceState.NOT_STARTED);
            assertThat(info.appName()).isEqualTo("Firecracker");
            assertThat(vm.api().getFirecrackerVersion().firecrackerVersion()).isEqualTo(Binaries.version());
            assertThat(vm.log()).contains("Running Firecracker v" + Binaries.version());
            assertThat(Files.isDirectory(vm.workDir())).isTrue();
        }
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(Files.exists(vm.workDir())).isFalse();
        assertThat(vm.isRunning()).isFalse();
        assertThatThrownBy(vm::api).isInstanceOf(MachineClosedException.class).hasMessageContaining("EXITED");
        assertThatThrownBy(vm::start).hasMessageContaining("start() may be called once");
        assertThat(vm.transitions()).extracting(t -> t.from() + "->" + t.to())
                .containsExactly("NEW->STARTING", "STARTING->RUNNING", "RUNNING->STOPPING", "STOPPING->EXITED");
    }

    @Test
    void keepAliveServesManyRequestsOnOneConnection() throws Exception {
        try (FirecrackerMachine vm = machine().build().start()) {
            // Firecracker's side: start() already talked to it, so its sockets are the listener, the console and
            // that one connection. With keep-alive, no other connection appears, request after request.
            long pid = vm.pid().orElseThrow();
            java.util.Set<String> before = socketsOf(pid);
            java.util.Set<String> accepted = new java.util.HashSet<>();
            for (int i = 0; i < 100; i++) {
                assertThat(vm.api().describeInstance().state()).isEqualTo(InstanceState.NOT_STARTED);
                java.util.Set<String> now = socketsOf(pid);
                now.removeAll(before);
                accepted.addAll(now);
            }
            assertThat(accepted).as("new connections Firecracker accepted for 100 requests").isEmpty();
            assertThat(socketsOf(pid)).isEqualTo(before);
        }
    }

    private static java.util.Set<String> socketsOf(long pid) throws java.io.IOException {
        java.util.Set<String> sockets = new java.util.HashSet<>();
        try (var fds = Files.list(Path.of("/proc", Long.toString(pid), "fd"))) {
            for (Path fd : fds.toList()) {
                try {
                    String target = Files.readSymbolicLink(fd).toString();
                    if (target.startsWith("socket:")) sockets.add(target);
                } catch (java.io.IOException closedMeanwhile) {
                    // gone between list and read
                }
            }
        }
        return sockets;
    }

    @Test
    void preBootConfigurationRoundTrips() throws Exception {
        Path disk = Files.write(tmp.resolve("disk.img"), new byte[4096]);
        Path kernel = Files.write(tmp.resolve("vmlinux"), new byte[] {1, 2, 3});
        try (FirecrackerMachine vm = machine().build().start()) {
            FirecrackerApi api = vm.api();
            api.putMachineConfiguration(MachineConfiguration.of(2, 256).withTrackDirtyPages(true));
            api.patchMachineConfiguration(new MachineConfiguration(null, null, 384, null, null, null));
            MachineConfiguration mc = api.getMachineConfiguration();
            assertThat(mc.vcpuCount()).isEqualTo(2);
            assertThat(mc.memSizeMib()).isEqualTo(384);
            assertThat(mc.trackDirtyPages()).isTrue();

            api.putGuestBootSource(BootSource.of(kernel.toString(), "console=ttyS0 reboot=k panic=1"));
            RateLimiter limiter = new RateLimiter(TokenBucket.of(1_000_000, 100), new TokenBucket(10L, 1000L, 100L));
            api.putGuestDriveByID(Drive.of("rootfs", disk.toString(), true, false).withCacheType(Drive.CacheType.Writeback)
                    .withIoEngine(Drive.IoEngine.Sync).withRateLimiter(limiter));
            api.putGuestDriveByID(Drive.of("data", disk.toString(), false, true).withPartuuid("0eaa91a0-01"));
            api.putBalloon(Balloon.of(16, true, 1));
            api.putGuestVsock(Vsock.of(3, vm.workDir().resolve("v.sock").toString()));
            api.putEntropyDevice(new EntropyDevice(null));

            FullVmConfiguration full = api.getExportVmConfig();
            assertThat(full.machineConfig().memSizeMib()).isEqualTo(384);
            assertThat(full.bootSource().bootArgs()).isEqualTo("console=ttyS0 reboot=k panic=1");
            assertThat(full.drives()).extracting(Drive::driveId).containsExactly("rootfs", "data");
            assertThat(full.drives().getFirst().rateLimiter().bandwidth().size()).isEqualTo(1_000_000L);
            assertThat(full.drives().getFirst().cacheType()).isEqualTo(Drive.CacheType.Writeback);
            assertThat(full.balloon().amountMib()).isEqualTo(16);
            assertThat(full.vsock().guestCid()).isEqualTo(3);
            assertThat(api.describeBalloonConfig().deflateOnOom()).isTrue();
        }
    }

    @Test
    void mmdsDataStorePutPatchGet() {
        try (FirecrackerMachine vm = machine().build().start()) {
            ObjectNode data = JsonNodeFactory.instance.objectNode();
            data.putObject("latest").putObject("meta-data").put("ami-id", "ami-1").put("hostname", "kiln");
            vm.api().putMmds(data);
            ObjectNode patch = JsonNodeFactory.instance.objectNode();
            patch.putObject("latest").putObject("meta-data").put("hostname", "patched");
            vm.api().patchMmds(patch);
            JsonNode got = vm.api().getMmds();
            assertThat(got.at("/latest/meta-data/ami-id").asText()).isEqualTo("ami-1");
            assertThat(got.at("/latest/meta-data/hostname").asText()).isEqualTo("patched");
            // MMDS config needs a network interface: the error says so.
            assertThatThrownBy(() -> vm.api().putMmdsConfig(MmdsConfig.of(MmdsConfig.Version.V2, List.of())))
                    .isInstanceOf(FirecrackerApiException.class)
                    .satisfies(e -> assertThat(((FirecrackerApiException) e).faultMessage()).containsIgnoringCase("network interface"));
        }
    }

    @Test
    void metadataFileFillsMmdsAtStart() {
        ObjectNode data = JsonNodeFactory.instance.objectNode().put("from", "file");
        try (FirecrackerMachine vm = machine().metadata(data).build().start()) {
            assertThat(vm.api().getMmds().path("from").asText()).isEqualTo("file");
            assertThat(vm.commandLine()).contains("--metadata");
        }
    }

    @Test
    void errorsCarryStatusAndFaultMessage() {
        try (FirecrackerMachine vm = machine().build().start()) {
            assertThatThrownBy(() -> vm.api().describeBalloonConfig()).isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
                assertThat(e.status()).isEqualTo(400);
                assertThat(e.faultMessage()).contains("No balloon device found");
                assertThat(e.method()).isEqualTo("GET");
                assertThat(e.path()).isEqualTo("/balloon");
                assertThat(e.isMissingEndpoint()).isFalse();
                assertThat(e.getMessage()).contains("GET /balloon", "400", "No balloon device found");
            });
            // Booting a kernel that is not an ELF image fails with Firecracker's reason (once it has its VM on /dev/kvm).
            Binaries.requireKvmDevice();
            Path bogus = vm.workDir().resolve("not-a-kernel");
            Files.writeString(bogus, "nope");
            vm.api().putGuestBootSource(BootSource.of(bogus.toString(), null));
            assertThatThrownBy(vm::instanceStart).isInstanceOfSatisfying(FirecrackerApiException.class,
                    e -> assertThat(e.faultMessage()).containsIgnoringCase("kernel"));
            assertThat(vm.instanceState()).isEqualTo(InstanceState.NOT_STARTED);
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void anUnsupportedMethodGivesAClearErrorAndTheClientRecovers() {
        try (FirecrackerMachine vm = machine().build().start()) {
            assertThatThrownBy(() -> vm.api().request("DELETE", "/", null)).isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
                assertThat(e.status()).isEqualTo(400);
                assertThat(e.faultMessage()).as("the body is not JSON").isNull();
                assertThat(e.rawBody()).contains("Invalid HTTP Method");
                assertThat(e.getMessage()).contains("not Firecracker's JSON error object", "Invalid HTTP Method");
            });
            // Firecracker drops the connection's pending requests after that; the next request still works.
            assertThat(vm.api().describeInstance().state()).isEqualTo(InstanceState.NOT_STARTED);
        }
    }

    @Test
    void anUnknownPathIsAMissingEndpoint() {
        try (FirecrackerMachine vm = machine().build().start()) {
            assertThatThrownBy(() -> vm.api().request("GET", "/no-such-thing", null))
                    .isInstanceOfSatisfying(FirecrackerApiException.class, e -> assertThat(e.isMissingEndpoint()).isTrue());
        }
    }

    @Test
    void newerEndpointsWorkOrFailClearlyByVersion() throws Exception {
        Path backing = Files.write(tmp.resolve("pmem.img"), new byte[2 << 20]);
        try (FirecrackerMachine vm = machine().build().start()) {
            FirecrackerApi api = vm.api();
            // Endpoints added after v1.7.0: serial (1.13), pmem (1.14), memory hotplug (1.14), balloon hinting (1.14).
            List<Runnable> newer = List.of(
                    () -> api.putSerialDevice(new SerialDevice(vm.workDir().resolve("serial.out").toString(), null)),
                    () -> api.putGuestPmemByID(new Pmem("pmem0", backing.toString(), false, true, null)),
                    () -> api.putMemoryHotplug(new MemoryHotplugConfig(1024L, null, null)));
            if (Binaries.atLeast(1, 14)) {
                newer.forEach(Runnable::run);
                assertThat(api.getExportVmConfig().pmem()).extracting(Pmem::id).containsExactly("pmem0");
                assertThat(api.getExportVmConfig().memoryHotplug().totalSizeMib()).isEqualTo(1024L);
            } else {
                for (Runnable call : newer) {
                    assertThatThrownBy(call::run).isInstanceOfSatisfying(FirecrackerApiException.class, e -> {
                        assertThat(e.isMissingEndpoint()).as(e.getMessage()).isTrue();
                        assertThat(e.getMessage()).contains("does not have this endpoint");
                    });
                }
            }
            // Before boot, the post-boot operations are refused with a reason, on every version.
            for (Runnable postBoot : List.<Runnable>of(api::describeBalloonHinting, () -> api.startBalloonHinting(new BalloonStartCmd(true)),
                    api::stopBalloonHinting, api::getMemoryHotplug, api::describeBalloonStats, api::pause,
                    () -> api.createSnapshot(new SnapshotCreateParams("/tmp/m", "/tmp/s", null)))) {
                assertThatThrownBy(postBoot::run).isInstanceOf(FirecrackerApiException.class)
                        .satisfies(e -> assertThat(((FirecrackerApiException) e).status()).isEqualTo(400));
            }
        }
    }

    @Test
    void pauseBeforeBootIsRefused() {
        try (FirecrackerMachine vm = machine().build().start()) {
            assertThatThrownBy(vm::pause).isInstanceOfSatisfying(FirecrackerApiException.class,
                    e -> assertThat(e.faultMessage()).contains("not supported before starting"));
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            assertThatThrownBy(() -> vm.api().patchVm(new Vm(Vm.State.Resumed))).isInstanceOf(FirecrackerApiException.class);
        }
    }

    @Test
    void logFifoReachesTheMachine() {
        try (FirecrackerMachine vm = machine().build().start()) {
            vm.api().describeInstance();
            vm.awaitLogMessage("The API server received a Get request on \"/\"", WAIT);
            vm.awaitLogMessage(Pattern.compile("\\[" + vm.id() + ":fc_api] The request was executed successfully"), WAIT);
            assertThatThrownBy(() -> vm.awaitLogMessage("never logged", Duration.ofMillis(300)))
                    .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("never logged").hasMessageContaining("Running Firecracker");
        }
    }

    @Test
    void loggerCanBeSetThroughTheApiWhenKilnDoesNotReadTheLog() throws Exception {
        // Without --log-path, PUT /logger configures the logger.
        try (FirecrackerMachine vm = machine().logFifo(false).logLevel(null).build().start()) {
            Path file = Files.createFile(vm.workDir().resolve("api.log")); // v1.7.0 does not create it
            vm.api().putLogger(new LoggerConfig(LoggerConfig.Level.Info, file.toString(), true, false, null));
            vm.api().describeInstance();
            // Firecracker logs each request as it takes it, before it answers.
            assertThat(Files.readString(file)).contains("The API server received a Get request on \"/\"");
        }
    }

    @Test
    void aLoggerThatWouldMoveTheLogOffKilnsFifoIsRefused() throws Exception {
        try (FirecrackerMachine vm = machine().build().start()) {
            Path file = Files.createFile(vm.workDir().resolve("api.log"));
            assertThatThrownBy(() -> vm.api().putLogger(new LoggerConfig(LoggerConfig.Level.Info, file.toString(), true, false, null)))
                    .isInstanceOf(KilnException.class).hasMessageContaining("FIFO").hasMessageContaining("logFifo(false)");
            vm.awaitLogMessage("The API server received a Get request on \"/\"", WAIT); // the log still reaches Kiln
        }
    }

    @Test
    void metricsReachTheMachine() {
        FirecrackerMachine vm = machine().expectKillBySignal(true).build().start();
        // FlushMetrics is a post-boot action: before boot Firecracker refuses it, with its reason.
        assertThatThrownBy(vm::flushMetrics).isInstanceOfSatisfying(FirecrackerApiException.class,
                e -> assertThat(e.faultMessage()).contains("not supported before starting"));
        // Metrics are set by the command line: configuring them again through the API is refused.
        assertThatThrownBy(() -> vm.api().putMetrics(MetricsConfig.of(vm.workDir().resolve("m").toString())))
                .isInstanceOf(FirecrackerApiException.class);
        // Firecracker flushes its metrics when a signal ends it: that line arrives through the FIFO.
        Posix.kill(vm.pid().orElseThrow(), 1);
        vm.awaitExit(WAIT);
        List<JsonNode> lines = vm.drainMetrics();
        assertThat(lines).isNotEmpty();
        assertThat(lines.getLast().has("utc_timestamp_ms")).as(lines.getLast().toString()).isTrue();
        assertThat(lines.getLast().path("api_server").isObject()).isTrue();
    }

    @Test
    void apiCallDurationsFromTheDebugLog() {
        FirecrackerMachine vm = machine().checkApiCallDurations(Duration.ofSeconds(5)).build().start();
        try (vm) {
            for (int i = 0; i < 5; i++) vm.api().getMachineConfiguration();
            vm.api().putMachineConfiguration(MachineConfiguration.of(1, 128));
            vm.awaitLogMessage("Total previous API call duration", WAIT);
        }
        List<ApiCallDurations.Call> calls = ApiCallDurations.parse(vm.log());
        assertThat(calls).hasSizeGreaterThanOrEqualTo(6);
        assertThat(calls).anyMatch(c -> c.method().equals("Put") && c.path().equals("/machine-config") && c.body() != null);
        assertThat(vm.checkFailures()).isEmpty();
        // And the check bites: with a bound of zero every call is too slow.
        assertThat(ApiCallDurations.slowerThan(vm.log(), Duration.ZERO)).isNotEmpty();
    }

    @Test
    void anInterceptedSignalIsNoticed() {
        FirecrackerMachine vm = machine().failOnInterceptedSignal(true).build().start();
        long pid = vm.pid().orElseThrow();
        Posix.kill(pid, 1); // SIGHUP: Firecracker's handler logs and exits
        assertThatThrownBy(() -> vm.awaitExit(WAIT)).isInstanceOf(FirecrackerCheckException.class)
                .hasMessageContaining(FirecrackerMachine.INTERCEPTED_SIGNAL);
        assertThat(vm.interceptedSignal()).isTrue();
        assertThat(vm.exitCode()).hasValue(156);
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
    }

    @Test
    void anExpectedSignalIsNotAFailure() {
        FirecrackerMachine vm = machine().failOnInterceptedSignal(true).expectKillBySignal(true).build().start();
        Posix.kill(vm.pid().orElseThrow(), 1);
        assertThat(vm.awaitExit(WAIT)).isEqualTo(156);
        assertThat(vm.interceptedSignal()).isTrue();
        assertThat(vm.checkFailures()).isEmpty();
    }

    /**
     * A stopped Firecracker answers nothing: close() must neither wait out a call's 30 s nor the shutdown timeout, and
     * a caller whose call was under way hears that the machine closed.
     */
    @Test
    void closeCancelsACallThatHangsAndItsCallerHearsMachineClosed() throws Exception {
        FirecrackerMachine vm = machine().shutdownTimeout(Duration.ofSeconds(120)).build().start();
        long pid = vm.pid().orElseThrow();
        Posix.kill(pid, Posix.SIGSTOP);
        var call = new java.util.concurrent.CompletableFuture<Object>();
        Thread caller = Thread.ofPlatform().name("api-caller").start(() -> {
            try {
                call.complete(vm.api().describeInstance());
            } catch (Throwable t) {
                call.completeExceptionally(t);
            }
        });
        // Under way: the request sent, the caller parked for the answer a stopped Firecracker will not give.
        var inFlight = dev.kiln.support.Deadline.after(Duration.ofSeconds(10));
        while (!(caller.getState() == Thread.State.TIMED_WAITING && java.util.Arrays.stream(caller.getStackTrace())
                .anyMatch(f -> f.getClassName().endsWith("UnixSocketTransport")))) {
            assertThat(inFlight.expired()).as("the API call under way after 10 s; its thread: %s", caller.getState()).isFalse();
            Thread.sleep(5);
        }
        long t0 = System.nanoTime();
        vm.close();
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).as("close() with a 120 s shutdown timeout and a 30 s API timeout")
                .isLessThan(Duration.ofSeconds(20));
        assertThatThrownBy(() -> call.get(10, java.util.concurrent.TimeUnit.SECONDS))
                .cause().isInstanceOf(MachineClosedException.class);
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
    }

    @Test
    void killEndsItAtOnce() {
        FirecrackerMachine vm = machine().build().start();
        long pid = vm.pid().orElseThrow();
        vm.kill();
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(vm.exitCode()).hasValue(137);
        assertThat(ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false)).isFalse();
        assertThat(vm.interceptedSignal()).isFalse();
        vm.kill(); // idempotent
        vm.close();
    }

    @Test
    void shutdownWithoutAGuestUsesSigterm() {
        FirecrackerMachine vm = machine().build().start();
        vm.shutdown(WAIT);
        assertThat(vm.exitCode()).hasValue(128 + Posix.SIGTERM);
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
    }

    @Test
    void aStaleSocketIsRemovedBeforeLaunch() throws Exception {
        Path socket = Files.writeString(tmp.resolve("api.sock"), "stale");
        try (FirecrackerMachine vm = machine().apiSocket(socket).build().start()) {
            assertThat(vm.api().describeInstance().state()).isEqualTo(InstanceState.NOT_STARTED);
            assertThat(vm.apiSocket()).isEqualTo(socket);
        }
    }

    @Test
    void aFailedLaunchSaysWhyWithFirecrackersOutput() {
        FirecrackerMachine vm = machine().args("--no-such-flag").build();
        assertThatThrownBy(vm::start).isInstanceOfSatisfying(LaunchException.class, e -> {
            assertThat(e.commandLine()).contains("--no-such-flag");
            assertThat(e.exitCode()).isNotNull().isNotZero();
            assertThat(e.vmmOutput()).contains("no-such-flag");
        });
        assertThat(vm.state()).isEqualTo(MachineState.FAILED);
    }

    @Test
    void aFailingConfigurationStepIsNamed() {
        FirecrackerMachine vm = machine().configure("machine size", m -> m.api().putMachineConfiguration(MachineConfiguration.of(0, 128))).build();
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("configuration step 'machine size' failed").hasMessageContaining("vcpu");
    }

    @Test
    void aMissingBinaryIsAClearError() {
        assertThatThrownBy(() -> FirecrackerMachine.builder().noGuest().binary(tmp.resolve("nope").toString()).start())
                .isInstanceOf(LaunchException.class).hasMessageContaining("FIRECRACKER_BIN");
    }

    @Test
    void noApiBootsFromTheConfigFile() throws Exception {
        Binaries.requireKvmDevice();
        Path bogus = Files.writeString(tmp.resolve("vmlinux"), "not an ELF kernel");
        FullVmConfiguration config = FullVmConfiguration.of(BootSource.of(bogus.toString(), "console=ttyS0"), MachineConfiguration.of(1, 128));
        FirecrackerMachine vm = machine().noApi(true).configFile(config).bootTimer(true).build().start();
        assertThat(vm.commandLine()).contains("--no-api", "--config-file", "--boot-timer");
        assertThatThrownBy(vm::api).hasMessageContaining("--no-api");
        // Firecracker builds the microVM from the file at once; a kernel that is not an ELF ends it.
        assertThat(vm.awaitExit(WAIT)).isNotZero();
        assertThat(vm.vmmLog()).containsIgnoringCase("kernel");
    }

    @Test
    void theConsoleIsAttachedToFirecrackersStdio() {
        // Without a log path Firecracker logs to its stdout: that is the console.
        try (FirecrackerMachine vm = machine().logFifo(false).build().start()) {
            vm.console().cursorAtStart().await("Running Firecracker v" + Binaries.version(), WAIT);
        }
    }

    @Test
    void guestNeedsTheVsockAgent() {
        try (FirecrackerMachine vm = machine().build().start()) {
            assertThatThrownBy(vm::guest).hasMessageContaining("has no guest agent");
            assertThatThrownBy(vm::agent).hasMessageContaining("qemu-guest-agent on vsock").hasMessageContaining("agentOverVsock");
        }
    }

    @Test
    void theAgentOverVsockIsWiredButNeedsABootedGuest() {
        try (FirecrackerMachine vm = machine().vsock(3).agentOverVsock(1024).build().start()) {
            assertThat(vm.api().getExportVmConfig().vsock().guestCid()).isEqualTo(3);
            assertThat(vm.workDir().resolve("vsock.sock")).exists();
            // No guest runs: the agent cannot answer, and the wait says so within its timeout.
            assertThatThrownBy(() -> vm.guest().awaitReady(Duration.ofSeconds(3))).isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("guest agent");
        }
    }
}
