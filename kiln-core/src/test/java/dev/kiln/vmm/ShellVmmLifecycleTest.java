package dev.kiln.vmm;

import dev.kiln.AbnormalShutdownException;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineCancelledException;
import dev.kiln.MachineClosedException;
import dev.kiln.MachineState;
import dev.kiln.StateChange;
import dev.kiln.support.Leftovers;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import static dev.kiln.MachineState.EXITED;
import static dev.kiln.MachineState.FAILED;
import static dev.kiln.MachineState.NEW;
import static dev.kiln.MachineState.PAUSED;
import static dev.kiln.MachineState.RUNNING;
import static dev.kiln.MachineState.STARTING;
import static dev.kiln.MachineState.STOPPING;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * The machine core's states, as exact sequences of transitions, on every path a machine can take. A bash script
 * stands in for the VMM ({@link ShellVmm}): a real process under the real lifeline, whose behaviour each test
 * scripts. The same sequences on real QEMU and Firecracker are checked in those modules.
 */
class ShellVmmLifecycleTest {
    @AfterEach
    void nothingLeft() {
        assertThat(Leftovers.after(Duration.ofSeconds(5))).isEmpty();
    }

    private static List<String> steps(dev.kiln.Machine m) {
        return m.transitions().stream().map(t -> t.from() + "->" + t.to()).toList();
    }

    private static List<String> pairs(MachineState... states) {
        List<String> out = new java.util.ArrayList<>();
        for (int i = 1; i < states.length; i++) out.add(states[i - 1] + "->" + states[i]);
        return out;
    }

    @Test
    void startThenShutdown() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        Path dir;
        try (vm) {
            vm.start();
            dir = vm.workDir();
            assertThat(vm.state()).isEqualTo(RUNNING);
            vm.shutdown(Duration.ofSeconds(10));
        }
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.transitions()).extracting(StateChange::reason).startsWith("start()", "up and ready", "shutdown()");
        assertThat(vm.exitCode()).hasValue(0);
        assertThat(dir).doesNotExist();
        assertThat(vm.vmm.disconnects).isEqualTo(1);
    }

    @Test
    void startThenKill() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.start();
        vm.kill();
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.exitCode()).hasValue(128 + 9);
        vm.close(); // idempotent
        assertThat(steps(vm)).hasSize(4);
    }

    @Test
    void theVmmExitingByItselfIsCleanedUpAndAwaitExitGivesItsCode() {
        ShellVmm.Machine vm = ShellVmm.machine("echo UP; read -r _ < /dev/null; sleep 0.2; exit 3");
        vm.start();
        assertThat(vm.awaitExit(Duration.ofSeconds(10))).isEqualTo(3);
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.transitions().get(2).reason()).contains("exited by itself").contains("exited with code 3");
        assertThatThrownBy(vm::pause).isInstanceOf(MachineClosedException.class).hasMessageContaining("exited by itself");
    }

    @Test
    void aVmmThatDiesBeforeItIsUpFailsTheStartWithItsOutputAndExitCode() {
        ShellVmm.Machine vm = ShellVmm.machine("echo 'no such device: virtio-warp' >&2; exit 7");
        assertThatThrownBy(vm::start).isInstanceOf(LaunchException.class)
                .hasMessageContaining("no such device: virtio-warp")
                .satisfies(e -> assertThat(((LaunchException) e).exitCode()).isEqualTo(7));
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, FAILED));
        assertThat(vm.workDir()).doesNotExist();
        assertThatThrownBy(vm::start).hasMessageContaining("FAILED").hasMessageContaining("start() may be called once");
    }

    @Test
    void anErrorDuringBringUpStillCleansEverythingUpAndIsRethrownAsIs() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.vmm.bringUpHook = d -> {
            throw new OutOfMemoryError("simulated");
        };
        assertThatThrownBy(vm::start).isInstanceOf(OutOfMemoryError.class).hasMessage("simulated");
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, FAILED));
        assertThat(vm.process().isAlive()).isFalse();
        assertThat(vm.workDir()).doesNotExist();
    }

    @Test
    void aVmmIgnoringTheStopIsKilledAfterTheTimeoutAndTheShutdownSaysSo() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.STUBBORN);
        vm.start();
        assertThatThrownBy(() -> vm.shutdown(Duration.ofMillis(300))).isInstanceOf(AbnormalShutdownException.class)
                .hasMessageContaining("to exit after SIGTERM");
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.exitCode()).hasValue(128 + 9);
    }

    @Test
    void pauseAndResumeAreIdempotent() {
        try (ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE)) {
            vm.start();
            vm.pause();
            vm.pause();
            assertThat(vm.process().isStopped()).isTrue();
            vm.resume();
            vm.resume();
            assertThat(vm.process().isStopped()).isFalse();
            vm.shutdown(Duration.ofSeconds(10));
            assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, PAUSED, RUNNING, STOPPING, EXITED));
        }
    }

    @Test
    void closingBeforeStartEndsIt() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.close();
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, EXITED));
        assertThatThrownBy(vm::start).isInstanceOf(KilnException.class).hasMessageContaining("EXITED");
    }

    @Test
    void closingWhileStartingCallsTheStartOff() throws Exception {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        CountDownLatch inBringUp = new CountDownLatch(1);
        vm.vmm.bringUpHook = d -> {
            inBringUp.countDown();
            vm.console().cursorAtStart().await("never printed", d.remaining()); // ends when the console closes
        };
        CompletableFuture<Void> starting = CompletableFuture.runAsync(vm::start, r -> Thread.ofVirtual().start(r));
        assertThat(inBringUp.await(30, TimeUnit.SECONDS)).isTrue();
        vm.close();
        assertThat(vm.state()).isEqualTo(FAILED);
        assertThatThrownBy(() -> starting.get(30, TimeUnit.SECONDS)).isInstanceOf(ExecutionException.class)
                .cause().isInstanceOf(MachineClosedException.class).hasMessageContaining("closed while starting");
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, FAILED));
        assertThat(vm.process().isAlive()).isFalse();
    }

    @Test
    void aCancelledMachineSaysSoToEveryLaterCall() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.start();
        vm.cancel("the test gave up");
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.cancellation()).hasValue("the test gave up");
        assertThatThrownBy(vm::pause).isInstanceOf(MachineCancelledException.class).hasMessageContaining("the test gave up");
        vm.close();
    }

    @Test
    void aStoppedVmmIsKilledAtOnceOnClose() {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.start();
        vm.process().signal(dev.kiln.os.Posix.SIGSTOP); // behind Kiln's back
        vm.vmm.awaitStopped(true);
        assertThatThrownBy(() -> vm.shutdown(Duration.ofMinutes(10))).isInstanceOf(AbnormalShutdownException.class)
                .hasMessageContaining("stopped by a signal");
        assertThat(vm.state()).isEqualTo(EXITED);
    }

    @Test
    void twoThreadsClosingAtOnceStopItOnce() throws Exception {
        ShellVmm.Machine vm = ShellVmm.machine(ShellVmm.POLITE);
        vm.start();
        CountDownLatch go = new CountDownLatch(1);
        List<CompletableFuture<Void>> closers = java.util.stream.IntStream.range(0, 4).mapToObj(i -> CompletableFuture.runAsync(() -> {
            try {
                go.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            vm.close();
            assertThat(vm.state()).as("close returns once cleanup is done").isEqualTo(EXITED);
        }, r -> Thread.ofVirtual().start(r))).toList();
        go.countDown();
        for (var c : closers) c.get(30, TimeUnit.SECONDS);
        assertThat(steps(vm)).containsExactlyElementsOf(pairs(NEW, STARTING, RUNNING, STOPPING, EXITED));
        assertThat(vm.vmm.disconnects).isEqualTo(1);
    }
}
