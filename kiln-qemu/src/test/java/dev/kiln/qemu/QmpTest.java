package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineClosedException;
import dev.kiln.MachineState;
import dev.kiln.WaitTimeoutException;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

/** QMP against a real QEMU with no guest: paused ({@code -S}), no kernel. Fast. */
@ExtendWith(QemuAvailable.class)
class QmpTest {
    private static QemuMachine paused() {
        return QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).accelerator(Accelerator.TCG).start();
    }

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void greetingCapabilitiesAndQueryStatus() {
        try (QemuMachine vm = paused()) {
            assertThat(vm.state()).isEqualTo(MachineState.PAUSED);
            assertThat(vm.qmp().greeting().path("QMP").path("version").path("qemu").path("major").asInt()).isGreaterThanOrEqualTo(7);
            JsonNode status = vm.command("query-status");
            assertThat(status.path("status").asText()).isEqualTo("prelaunch");
            assertThat(vm.qmp().transcript()).anyMatch(l -> l.startsWith("→ ") && l.contains("query-status"));
        }
    }

    @Test
    void errorsCarryClassAndDescription() {
        try (QemuMachine vm = paused()) {
            assertThatThrownBy(() -> vm.command("no-such-command"))
                    .isInstanceOfSatisfying(QmpException.class, e -> {
                        assertThat(e.errorClass()).isEqualTo("CommandNotFound");
                        assertThat(e.getMessage()).contains("no-such-command");
                    });
            var raw = vm.qmp().call("no-such-command", null, Duration.ofSeconds(5));
            assertThat(raw.path("error").path("class").asText()).isEqualTo("CommandNotFound");
            // the connection still works after an error
            assertThat(vm.command("query-status").path("running").asBoolean()).isFalse();
        }
    }

    @Test
    void eventsAreQueuedAndMatched() {
        try (QemuMachine vm = paused()) {
            vm.command("cont");
            Event resume = vm.awaitEvent("RESUME", null, Duration.ofSeconds(10));
            assertThat(resume.timestamp().getEpochSecond()).isPositive();
            vm.command("stop");
            vm.command("cont");
            vm.command("stop");
            // Both STOPs are queued; a match on a field that does not exist finds nothing.
            assertThatThrownBy(() -> vm.awaitEvent("STOP", JsonMatch.of("{\"data\": {\"nope\": 1}}"), Duration.ofMillis(300)))
                    .hasMessageContaining("STOP");
            Event stop = vm.qmp().awaitAnyEvent(java.util.List.of(new Qmp.EventFilter("SHUTDOWN", null),
                    new Qmp.EventFilter("STOP", null)), Duration.ofSeconds(10));
            assertThat(stop.name()).isEqualTo("STOP");
            assertThat(vm.events()).extracting(Event::name).contains("RESUME", "STOP");
            assertThat(vm.events()).isEmpty();
        }
    }

    @Test
    void eventDataArePlainJavaValues() {
        try (QemuMachine vm = paused()) {
            vm.command("system_reset");
            Event reset = vm.awaitEvent("RESET", JsonMatch.of("{\"data\": {\"guest\": false}}"), Duration.ofSeconds(10));
            assertThat(reset.data()).containsEntry("guest", false).containsKey("reason");
            assertThat(reset.text("reason")).startsWith("host-qmp");
            assertThat(reset.json()).contains("\"event\":\"RESET\"").contains("\"timestamp\"");
            assertThatThrownBy(() -> reset.data().put("guest", true)).isInstanceOf(UnsupportedOperationException.class);
        }
    }

    @Test
    void unreadEventsAreBoundedOldestDroppedAndCounted() {
        try (QemuMachine vm = paused()) {
            Qmp qmp = vm.qmp();
            // STOP and RESUME: one each per command, not rate-limited by QEMU (unlike RTC_CHANGE, VSERPORT_CHANGE…)
            int pairs = Qmp.EVENT_QUEUE_CAPACITY / 2 + 100;
            for (int i = 0; i < pairs; i++) {
                qmp.execute("cont");
                qmp.execute("stop");
            }
            // QEMU sends a command's events before its reply: all of them are in once the last reply is
            List<Event> queued = qmp.peekEvents();
            assertThat(queued).hasSize(Qmp.EVENT_QUEUE_CAPACITY);
            assertThat(qmp.droppedEvents()).isEqualTo(2L * pairs - Qmp.EVENT_QUEUE_CAPACITY);
            // the newest stay, in order: RESUME, STOP, … the last STOP
            assertThat(queued.getFirst().name()).isEqualTo("RESUME");
            assertThat(queued.getLast().name()).isEqualTo("STOP");
            for (int i = 1; i < queued.size(); i++) {
                assertThat(queued.get(i).name()).isNotEqualTo(queued.get(i - 1).name());
                assertThat(queued.get(i).timestamp()).isAfterOrEqualTo(queued.get(i - 1).timestamp());
            }
            // a wait that times out says what it saw, the drops included
            assertThatThrownBy(() -> qmp.awaitEvent("SHUTDOWN", null, Duration.ofMillis(100)))
                    .isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("SHUTDOWN")
                    .hasMessageContaining("\"event\":\"STOP\"")
                    .hasMessageContaining((2L * pairs - Qmp.EVENT_QUEUE_CAPACITY) + " older ones dropped");
            assertThat(qmp.events()).hasSize(Qmp.EVENT_QUEUE_CAPACITY);
            assertThat(qmp.peekEvents()).isEmpty();
        }
    }

    @Test
    void pauseAndResumeAwaitTheirEvents() {
        try (QemuMachine vm = paused()) {
            vm.resume();
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            assertThat(vm.command("query-status").path("running").asBoolean()).isTrue();
            vm.pause();
            assertThat(vm.state()).isEqualTo(MachineState.PAUSED);
        }
    }

    @Test
    void shutdownQuitsAndCleansUp() {
        QemuMachine vm = paused();
        long pid = vm.pid().orElseThrow();
        Path dir = vm.workDir();
        vm.shutdown(Duration.ofSeconds(10));
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(vm.exitCode()).hasValue(0);
        assertThat(ProcessHandle.of(pid)).isEmpty();
        assertThat(dir).doesNotExist();
        assertThat(vm.isRunning()).isFalse();
        vm.close(); // idempotent
        assertThatThrownBy(vm::start).isInstanceOf(KilnException.class).hasMessageContaining("start() may be called once");
    }

    @Test
    void unknownOptionGivesLaunchExceptionWithQemusMessage() {
        assertThatThrownBy(() -> QemuMachine.builder().args("-no-such-option").start())
                .isInstanceOfSatisfying(LaunchException.class, e -> {
                    assertThat(e.vmmOutput()).contains("-no-such-option");
                    assertThat(e.exitCode()).isEqualTo(1);
                    assertThat(e.commandLine()).contains("-no-such-option");
                });
    }

    @Test
    void missingKernelFailsBeforeAnySpawn() {
        assertThatThrownBy(() -> QemuMachine.builder().kernel(Path.of("/nonexistent/vmlinuz"), null).start())
                .isInstanceOf(KilnException.class).hasMessageContaining("kernel not found: /nonexistent/vmlinuz");
    }

    @Test
    void missingBinaryIsNamed() {
        assertThatThrownBy(() -> QemuMachine.builder().binary("/nonexistent/qemu").start())
                .isInstanceOf(LaunchException.class).hasMessageContaining("/nonexistent/qemu");
    }

    @Test
    void qemuKilledBehindOurBack() {
        QemuMachine vm = paused();
        long pid = vm.pid().orElseThrow();
        Path dir = vm.workDir();
        Posix.kill(pid, Posix.SIGKILL);
        assertTimeoutPreemptively(Duration.ofSeconds(10), () -> {
            while (vm.state() != MachineState.EXITED) Thread.sleep(10);
        });
        assertThat(vm.qmp().state()).isEqualTo(Qmp.State.CLOSED);
        assertThat(vm.exitStatus().orElseThrow().signal()).isEqualTo(Posix.SIGKILL);
        assertThat(dir).doesNotExist();
        assertThatThrownBy(() -> vm.command("query-status")).isInstanceOf(MachineClosedException.class)
                .hasMessageContaining("exited by itself").hasMessageContaining("killed by SIGKILL");
        vm.close();
    }

    @Test
    void wedgedQmpFallsBackToKillWithinTheTimeout() {
        QemuMachine vm = paused();
        long pid = vm.pid().orElseThrow();
        Posix.kill(pid, Posix.SIGSTOP);
        long t0 = System.nanoTime();
        assertTimeoutPreemptively(Duration.ofSeconds(20), () ->
                assertThatThrownBy(() -> vm.shutdown(Duration.ofSeconds(2)))
                        .isInstanceOf(dev.kiln.AbnormalShutdownException.class));
        assertThat(Duration.ofNanos(System.nanoTime() - t0)).isLessThan(Duration.ofSeconds(15));
        assertThat(ProcessHandle.of(pid)).isEmpty();
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
    }

    @Test
    void killIsImmediateAndSilent() {
        QemuMachine vm = paused();
        vm.kill();
        assertThat(vm.exitStatus().orElseThrow().signal()).isEqualTo(Posix.SIGKILL);
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
    }

    @Test
    void tcpMonitorAndNullMonitor() throws Exception {
        int port;
        try (var s = new java.net.ServerSocket(0)) {
            port = s.getLocalPort();
        }
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16)
                .monitorTcp(new java.net.InetSocketAddress("127.0.0.1", port)).monitorNull().start()) {
            assertThat(vm.commandLine()).contains("-monitor").anyMatch(a -> a.contains("port=" + port));
            assertThat(vm.command("query-status").path("status").asText()).isEqualTo("prelaunch");
        }
    }

    @Test
    void withoutQmpShutdownUsesSigterm() {
        QemuMachine vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).qmp(false).start();
        assertThatThrownBy(vm::qmp).hasMessageContaining("no QMP");
        vm.shutdown(Duration.ofSeconds(10));
        // SIGTERM, not SIGKILL: QEMU exits 0 once its handler is in, or dies of SIGTERM if it came earlier
        var st = vm.exitStatus().orElseThrow();
        assertThat(st.exited() ? st.code() : st.signal()).isIn(0, Posix.SIGTERM);
    }

    @Test
    void filesAtLaunchAndOverScmRights() throws Exception {
        Path launchFile = Files.createTempFile("kiln-launch-fd", ".txt");
        Path passed = Files.createTempFile("kiln-scm-fd", ".txt");
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16)
                .addFile(launchFile, false, 1, "launch-fd").fdPassing(true).start()) {
            JsonNode sets = vm.command("query-fdsets");
            assertThat(sets.toString()).contains("launch-fd").contains("\"fdset-id\":1");
            JsonNode added = vm.addFileToSet(passed, true, 2, "scm-fd");
            assertThat(added.path("fdset-id").asInt()).isEqualTo(2);
            assertThat(vm.command("query-fdsets").toString()).contains("scm-fd");
            // getfd names the fd on the fd monitor; closefd on the same session proves QEMU holds it
            vm.passFile(passed, false, "myfd", "closefd", QmpArgs.of("fdname", "myfd"));
            assertThatThrownBy(() -> vm.passFile(passed, false, "other", "closefd", QmpArgs.of("fdname", "missing")))
                    .isInstanceOf(QmpException.class).hasMessageContaining("missing");
        } finally {
            Files.deleteIfExists(launchFile);
            Files.deleteIfExists(passed);
        }
    }
}
