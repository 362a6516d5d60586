package dev.kiln.qemu;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.WaitTimeoutException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Live exec through the agent alone, as on Firecracker (no virtio-serial there): a machine without exec slots. Output is
 * read from files as it grows, so it still comes while the command runs.
 */
@ExtendWith(QemuAvailable.class)
class AgentStreamingTest {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static QemuMachine vm;

    @BeforeAll
    static void boot() {
        vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()).execSlots(0));
    }

    @AfterAll
    static void close() {
        if (vm != null) vm.close();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void outputComesWhileTheCommandRunsAndItsFilesAreRemovedAfter() throws Exception {
        vm.guest().exec("mkfifo", "/run/go").orThrow();
        try (GuestProcess p = vm.guest().start("sh", "-c", "echo first; read x < /run/go; echo \"second $x\"; echo err >&2; exit 4")) {
            BufferedReader out = new BufferedReader(new InputStreamReader(p.stdout(), StandardCharsets.UTF_8));
            assertThat(out.readLine()).as("printed before it could go on").isEqualTo("first");
            assertThat(p.isAlive()).isTrue();
            vm.guest().exec("sh", "-c", "echo on > /run/go").orThrow();
            assertThat(out.readLine()).isEqualTo("second on");
            assertThat(p.waitFor(WAIT)).isEqualTo(4);
            assertThat(new String(p.stderr().readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("err\n");
            assertThatThrownBy(() -> p.stdin().write(1)).hasMessageContaining("cannot be streamed through the guest agent alone");
        }
        List<String> chunks = new CopyOnWriteArrayList<>();
        ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c", "echo \"$A $(pwd)\"; cat").stdin("in\n").env("A", "a b").workingDir("/proc")
                .onStdout(b -> chunks.add(new String(b, StandardCharsets.UTF_8))).build());
        assertThat(r.exitCode()).isZero();
        assertThat(String.join("", chunks)).isEqualTo("a b /proc\nin\n");
        assertThat(vm.guest().exec("sh", "-c", "ls -A /run/kiln-exec").stdoutText()).as("nothing left behind").isEmpty();
    }

    @Test
    void missingCommandsSignalsAndTimeoutsAsOverTheSlots() {
        assertThatThrownBy(() -> vm.guest().start("no-such-command").waitFor(WAIT))
                .isInstanceOf(GuestException.class).hasMessageContaining("'no-such-command' is not a command");
        GuestProcess sleeper = vm.guest().start("sleep", "600");
        sleeper.signal(15);
        assertThat(sleeper.waitFor(WAIT)).isEqualTo(143);
        sleeper.close();
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sh", "-c", "sleep 606 & exec sleep 607")
                .onStdout(b -> { }).timeout(Duration.ofSeconds(3)).build()))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("killed it");
        assertThat(vm.guest().exec("sh", "-c", "pidof sleep || echo none").stdoutText()).isEqualTo("none\n");
    }
}
