package dev.kiln.qemu;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.WaitTimeoutException;
import dev.kiln.MachineState;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.time.Duration;
import java.util.HexFormat;
import java.util.Random;
import java.util.regex.Pattern;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** One real boot of the default image serves the whole class. */
@ExtendWith(QemuAvailable.class)
class BootTest {
    static QemuMachine vm;

    @BeforeAll
    static void boot() {
        vm = TestGuests.bootReady(QemuMachine.builder().memoryMib(256));
    }

    @AfterAll
    static void teardown() {
        if (vm != null) vm.close();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void runsACommandAndSeesALinuxKernel() {
        ExecResult r = vm.guest().exec("uname", "-r");
        assertThat(r.exitCode()).isZero();
        assertThat(r.stdoutText()).contains("cloud-amd64");
        assertThat(vm.state()).isEqualTo(MachineState.RUNNING);
        assertThat(vm.commandLine()).contains("-accel").anyMatch(a -> a.contains("tsc_early_khz=") || !a.contains("tcg"));
    }

    @Test
    void exitCodesStderrStdinEnvAndWorkingDir() {
        ExecResult r = vm.guest().exec("sh", "-c", "echo out; echo err >&2; exit 3");
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.stdoutText()).isEqualTo("out\n");
        assertThat(r.stderrText()).isEqualTo("err\n");
        assertThat(vm.guest().exec(ExecRequest.of("cat").stdin("from the host").build()).stdoutText()).isEqualTo("from the host");
        assertThat(vm.guest().exec(ExecRequest.of("sh", "-c", "echo $KILN_X").env("KILN_X", "a b;c").build()).stdoutText())
                .isEqualTo("a b;c\n");
        assertThat(vm.guest().exec(ExecRequest.of("pwd").workingDir("/proc").build()).stdoutText()).isEqualTo("/proc\n");
    }

    @Test
    void largeOutputIsByteExact() {
        ExecResult r = vm.guest().exec("sh", "-c", "head -c 1500000 /dev/zero | tr '\\0' 'k'");
        assertThat(r.stdout()).hasSize(1_500_000);
        assertThat(new String(r.stdout())).matches("k+");
    }

    @Test
    void missingCommandAndTimeout() {
        assertThatThrownBy(() -> vm.guest().exec("/no/such/command"))
                .isInstanceOf(GuestException.class).hasMessageContaining("/no/such/command");
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sleep", "30").timeout(Duration.ofSeconds(1)).build()))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("sleep");
        assertThat(vm.guest().exec("sh", "-c", "pidof sleep || true").stdoutText()).isBlank();
    }

    @Test
    void copyInAndOutTenMiB(@TempDir Path tmp) throws Exception {
        byte[] data = new byte[10 * 1024 * 1024 + 17];
        new Random(42).nextBytes(data);
        Path in = tmp.resolve("in.bin");
        Files.write(in, data);
        vm.guest().copyIn(in, "/tmp/data.bin");
        String guestSum = vm.guest().exec("sha256sum", "/tmp/data.bin").orThrow().stdoutText().split(" ")[0];
        String hostSum = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        assertThat(guestSum).isEqualTo(hostSum);
        Path out = tmp.resolve("out.bin");
        vm.guest().copyOut("/tmp/data.bin", out);
        assertThat(Files.readAllBytes(out)).isEqualTo(data);
        vm.guest().exec("rm", "/tmp/data.bin").orThrow();
    }

    @Test
    void consoleIsInteractive() {
        assertThat(vm.console().transcript()).contains("KILN-READY").contains("Linux version");
        vm.console().send("echo kiln-$((6*7))\n");
        assertThat(vm.console().await(Pattern.compile("kiln-(\\d+)\\r?\\n"), Duration.ofSeconds(30)).group(1)).isEqualTo("42");
        assertThatThrownBy(() -> vm.console().await("never printed", Duration.ofMillis(200)))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("never printed");
    }

    @Test
    void qmpWorksBesideTheGuest() {
        assertThat(vm.command("query-status").path("status").asText()).isEqualTo("running");
        assertThat(vm.accelerator().accelerator()).isIn(Accelerator.KVM, Accelerator.TCG);
    }
}
