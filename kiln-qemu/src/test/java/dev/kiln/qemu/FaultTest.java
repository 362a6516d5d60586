package dev.kiln.qemu;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestImage;
import dev.kiln.WaitTimeoutException;
import dev.kiln.MachineClosedException;
import dev.kiln.MachineState;
import dev.kiln.Probe;
import dev.kiln.image.DefaultImage;
import dev.kiln.os.Posix;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Things going wrong under a running guest: each is reported clearly and promptly, and nothing is left. */
@ExtendWith(QemuAvailable.class)
class FaultTest {
    @TempDir Path tmp;

    @AfterEach
    void noneLeft() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void vmmKilledDuringAnExecFailsTheExecAtOnceSayingSo() throws Exception {
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder());
             var pool = Executors.newVirtualThreadPerTaskExecutor()) {
            var running = CompletableFuture.supplyAsync(() -> vm.guest().exec("sh", "-c", "touch /run/started; exec sleep 600"), pool);
            TestGuests.awaitGuestFile(vm, "/run/started"); // the exec is under way: spawned, its status being polled
            assertThat(running).isNotDone();
            Posix.kill(vm.pid().orElseThrow(), Posix.SIGKILL);
            // The bound guards against a hang only; the failure comes as soon as the socket closes. Whichever notices
            // first (the exec's connection, or the cleanup closing the agent client), the message names the death.
            assertThatThrownBy(() -> running.get(30, TimeUnit.SECONDS))
                    .isInstanceOf(ExecutionException.class).cause()
                    .isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("killed by SIGKILL");
            vm.awaitExit(Duration.ofSeconds(10));
            assertThat(vm.state()).isEqualTo(MachineState.EXITED);
            assertThat(vm.exitStatus().orElseThrow().signal()).isEqualTo(Posix.SIGKILL);
        }
    }

    @Test
    void aGuestKernelPanicIsDetectedAndReported() {
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder())) {
            assertThat(vm.guestPanic()).isEmpty();
            // The exec never returns: the kernel dies under it, and (panic=-1, -no-reboot) QEMU exits.
            assertThatThrownBy(() -> vm.guest().exec("sh", "-c", "echo c > /proc/sysrq-trigger"))
                    .isInstanceOf(MachineClosedException.class)
                    .hasMessageContaining("the guest kernel panicked")
                    .hasMessageContaining("sysrq");
            assertThat(vm.guestPanic()).hasValueSatisfying(line ->
                    assertThat(line).contains("Kernel panic - not syncing").contains("sysrq"));
            vm.awaitExit(Duration.ofSeconds(30));
            assertThat(vm.state()).isEqualTo(MachineState.EXITED);
            assertThat(vm.transitions()).as("the transitions say what happened")
                    .anySatisfy(t -> assertThat(t.to()).isEqualTo(MachineState.PANICKED));
            // Queued with QMP's events (QEMU's own GUEST_PANICKED needs a pvpanic device); read after the exit.
            var event = vm.awaitEvent("GUEST_PANICKED", null, Duration.ofSeconds(10));
            assertThat(event.text("line")).contains("sysrq");
        }
    }

    @Test
    void anAgentKilledInsideTheGuestMakesExecTimeOutSayingItStoppedAnswering() {
        try (QemuMachine vm = TestGuests.bootReady(QemuMachine.builder())) {
            vm.console().send("killall -9 qemu-ga; echo GA-\"\"KILLED\n"); // the quotes keep the echoed input from matching
            vm.console().await("GA-KILLED", Duration.ofSeconds(30));
            var request = ExecRequest.of("true").timeout(Duration.ofSeconds(5)).build();
            assertThatThrownBy(() -> vm.guest().exec(request))
                    .isInstanceOf(WaitTimeoutException.class)
                    .hasMessageContaining("stopped answering")
                    .hasMessageContaining("guest-");
            assertThat(vm.isRunning()).isTrue(); // the guest itself is fine: its console still answers
            vm.console().send("echo STILL-\"\"HERE\n");
            vm.console().await("STILL-HERE", Duration.ofSeconds(30));
        }
    }

    @Test
    void aHundredMebibyteConsoleFloodKeepsABoundedTailInMemoryAndAllInTheFile() throws Exception {
        Path log = tmp.resolve("console.log");
        var memory = ManagementFactory.getMemoryMXBean();
        System.gc();
        long heapBefore = memory.getHeapMemoryUsage().getUsed();
        long flood = 100L << 20;
        // The console on a virtio-serial port: the serial UART and the hvc console (16-byte writes) each move
        // well under 1 MB/s under TCG, a virtio-serial port a page per write.
        GuestImage image = DefaultImage.get(System.out::println);
        // The image prints its ready marker on the kernel's console, which is not this port: await the agent only.
        try (QemuMachine vm = QemuMachine.builder().image(image).console("virtserialport,name=org.kiln.flood", 0)
                .consoleLog(log).readiness(Probe.agent()).start()) {
            long before = vm.console().totalBytes();
            long t0 = System.nanoTime();
            // 64-character lines, written by the guest to the port Kiln reads as its console.
            ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c",
                    "p=$(grep -l org.kiln.flood /sys/class/virtio-ports/*/name); p=${p%/name}; p=/dev/${p##*/}; "
                            + "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c " + flood
                            + " > $p && echo FLOOD-\"\"DONE > $p")
                    .timeout(Duration.ofMinutes(10)).build());
            assertThat(r.exitCode()).as(r.stderrText()).isZero();
            vm.console().await("FLOOD-DONE", Duration.ofMinutes(2));
            double seconds = (System.nanoTime() - t0) / 1e9;
            long seen = vm.console().totalBytes() - before;
            System.gc();
            long heapGrowth = memory.getHeapMemoryUsage().getUsed() - heapBefore;
            System.out.printf("console flood: %d MiB in %.1f s, transcript %d chars, heap growth %d MiB%n",
                    seen >> 20, seconds, vm.console().transcript().length(), heapGrowth >> 20);
            assertThat(seen).isGreaterThanOrEqualTo(flood);
            assertThat(vm.console().transcript().length()).isLessThanOrEqualTo(dev.kiln.Console.DEFAULT_RETAINED_CHARS);
            // The retained tail is 4 Mi chars (8 MiB as UTF-16 at most), the figure the README gives, and the reader's
            // buffers are 32 KiB: allow twice the tail for what the collector has not reclaimed yet.
            assertThat(heapGrowth).isLessThan(16L << 20);
            vm.shutdown(Duration.ofSeconds(30));
        }
        assertThat(Files.size(log)).isGreaterThanOrEqualTo(flood);
    }
}
