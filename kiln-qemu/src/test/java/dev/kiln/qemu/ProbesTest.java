package dev.kiln.qemu;

import dev.kiln.LaunchException;
import dev.kiln.Probe;
import dev.kiln.WaitTimeoutException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Readiness probes against a real guest: each kind passing, and failing with what it awaited and what it saw. */
@ExtendWith(QemuAvailable.class)
class ProbesTest {
    static QemuMachine vm;

    @BeforeAll
    static void boot() {
        // A wrapper that speaks before QEMU starts: its words are in the VMM's output, for the VMM-log probe.
        vm = TestGuests.bootReady(QemuMachine.builder().forward(8080)
                .wrapper("/bin/sh", "-c", "echo wrapper-says-hello >&2; exec \"$@\"", "wrapper"));
    }

    @AfterAll
    static void close() {
        if (vm != null) vm.close();
        LeakCheck.assertNoneLeft();
    }

    private static final Duration SHORT = Duration.ofSeconds(3), LONG = Duration.ofSeconds(60);

    @Test
    void consoleAndVmmLogProbesSeeWhatWasPrintedBeforeTheyStarted() {
        Probe.consoleMatches("KILN-READY").await(vm, SHORT);
        Probe.vmmLogMatches("wrapper-says-hello").await(vm, SHORT);
        assertThatThrownBy(() -> Probe.consoleMatches("never-printed-\\d+").await(vm, Duration.ofMillis(300)))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("never-printed").hasMessageContaining("KILN-READY");
        assertThatThrownBy(() -> Probe.vmmLogMatches("never-logged").await(vm, Duration.ofMillis(300)))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("never-logged").hasMessageContaining("wrapper-says-hello");
    }

    @Test
    void aCommandProbeSaysWhatTheCommandLastAnswered() {
        Probe.agent().await(vm, SHORT);
        Probe.command("true").await(vm, SHORT);
        assertThatThrownBy(() -> Probe.command("sh", "-c", "echo not yet; exit 3").await(vm, Duration.ofSeconds(5)))
                .isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("command [sh, -c, echo not yet; exit 3] to succeed")
                .hasMessageContaining("exit code 3").hasMessageContaining("not yet");
    }

    @Test
    void portAndHttpProbesFollowAServerInTheGuest() {
        assertThatThrownBy(() -> Probe.tcpPort(8080).await(vm, Duration.ofSeconds(5))).isInstanceOf(WaitTimeoutException.class)
                .hasMessageContaining("no listener on port 8080");
        // With nothing listening in the guest, the forward still accepts on the host, then hangs up: not ready.
        assertThatThrownBy(() -> Probe.hostPort(8080).await(vm, Duration.ofSeconds(5))).isInstanceOf(WaitTimeoutException.class);
        vm.guest().exec("sh", "-c", "mkdir -p /www && echo probed > /www/index.html && httpd -p 8080 -h /www").orThrow();
        Probe.allOf(Probe.tcpPort(8080), Probe.hostPort(8080), Probe.http(8080, "/index.html", 200)).await(vm, LONG);
        assertThatThrownBy(() -> Probe.http(8080, "/missing", 200).withTimeout(Duration.ofSeconds(5)).await(vm, LONG))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("status 404");
        vm.guest().exec("sh", "-c", "killall httpd").orThrow();
    }

    @Test
    void aSpecsProbeThatNeverPassesFailsTheStartNamingIt() {
        assertThatThrownBy(() -> QemuMachine.builder().memoryMib(192).readyTimeout(Duration.ofSeconds(90))
                .readiness(Probe.imageReady(), Probe.command("test", "-e", "/run/never").withTimeout(Duration.ofSeconds(2))).start())
                .isInstanceOf(LaunchException.class)
                .hasMessageContaining("command [test, -e, /run/never] to succeed").hasMessageContaining("exit code 1")
                .hasCauseInstanceOf(WaitTimeoutException.class);
    }
}
