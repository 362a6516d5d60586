package dev.kiln.qemu;

import dev.kiln.ExecRequest;
import dev.kiln.GuestImage;
import dev.kiln.WaitTimeoutException;
import dev.kiln.MachineCancelledException;
import dev.kiln.MachineState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Pause, resume, reset and cancellation of running guests. */
@ExtendWith(QemuAvailable.class)
class LifecycleTest {
    static final GuestImage IMAGE = TestGuests.image();

    @AfterEach
    void noneLeft() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void pauseStopsTheGuestResumeContinuesItAndResetRebootsIt() {
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder())) {
            vm.pause();
            vm.pause(); // already paused: nothing to do (QEMU sends no second STOP to wait for)
            assertThat(vm.state()).isEqualTo(MachineState.PAUSED);
            assertThat(vm.transitions()).filteredOn(t -> t.to() == MachineState.PAUSED).hasSize(1);
            assertThat(vm.command("query-status").path("running").asBoolean()).isFalse();
            // A stopped guest runs nothing: its agent cannot answer.
            assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("true").timeout(Duration.ofSeconds(2)).build()))
                    .isInstanceOf(WaitTimeoutException.class);
            vm.resume();
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
            assertThat(vm.guest().exec("echo", "after resume").stdoutText()).isEqualTo("after resume\n");

            vm.guest().exec("sh", "-c", "echo marker > /run/before-reset").orThrow();
            var afterReset = vm.console().cursor();
            vm.reset();
            afterReset.await(IMAGE.readyMarker(), TestGuests.MARKER); // the second boot's marker
            vm.guest().awaitReady(TestGuests.AGENT);
            assertThat(vm.guest().exec("sh", "-c", "test -e /run/before-reset; echo $?").stdoutText())
                    .as("a fresh boot: the tmpfs file is gone").isEqualTo("1\n");
            assertThat(vm.isRunning()).isTrue();
            assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
        }
    }

    @Test
    void aCancelTokenKillsTheMachineAndTheExecUnderWaySaysItWasCancelled() throws Exception {
        CompletableFuture<Void> token = new CompletableFuture<>();
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder().cancelOn(token));
             var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            var running = CompletableFuture.supplyAsync(() -> vm.guest().exec("sh", "-c", "touch /run/started; exec sleep 600"), pool);
            TestGuests.awaitGuestFile(vm, "/run/started");
            token.complete(null);
            assertThatThrownBy(() -> running.get(30, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class)
                    .cause().isInstanceOf(MachineCancelledException.class)
                    .hasMessageContaining("cancelled").hasMessageContaining("cancel token");
            vm.awaitExit(Duration.ofSeconds(30));
            assertThat(vm.cancellation()).hasValueSatisfying(r -> assertThat(r).contains("cancel token"));
            assertThat(vm.state()).isEqualTo(MachineState.EXITED);
            assertThatThrownBy(() -> vm.guest().exec("true")).isInstanceOf(MachineCancelledException.class);
            assertThatThrownBy(vm::pause).isInstanceOf(MachineCancelledException.class);
        }
    }

    @Test
    void aTimeLimitKillsTheMachineAsACancellationNotAFailure() {
        // No guest needed: QEMU with stopped CPUs still runs until the limit.
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).timeLimit(Duration.ofSeconds(2)).start()) {
            vm.command("query-status");
            assertThat(vm.awaitExit(Duration.ofSeconds(30))).isEqualTo(128 + 9);
            assertThat(vm.cancellation()).hasValueSatisfying(r -> assertThat(r).contains("time limit"));
            assertThatThrownBy(() -> vm.command("query-status")).isInstanceOf(MachineCancelledException.class);
        }
    }

    @Test
    void aMachineWithoutCancellationIsNotCancelled() {
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).start()) {
            vm.kill();
            assertThat(vm.cancellation()).isEmpty();
            assertThatThrownBy(() -> vm.command("query-status")).isNotInstanceOf(MachineCancelledException.class);
        }
    }
}
