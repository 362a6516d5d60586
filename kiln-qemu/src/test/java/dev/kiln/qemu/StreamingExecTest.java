package dev.kiln.qemu;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.MachineClosedException;
import dev.kiln.WaitTimeoutException;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicLong;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * Commands over the exec ports of the default image: output delivered while they run (callbacks and handles' streams),
 * stdin streamed in, handles with pid, wait, signal and kill, and the bad cases.
 */
@ExtendWith(QemuAvailable.class)
class StreamingExecTest {
    private static final Duration WAIT = Duration.ofSeconds(60);
    private static QemuMachine vm;

    @BeforeAll
    static void boot() {
        vm = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()));
    }

    @AfterAll
    static void close() {
        if (vm != null) vm.close();
        LeakCheck.assertNoneLeft();
    }

    @Test
    void execCollectsStdoutStderrTheExitCodeAndTakesStdinEnvAndDirectory() {
        ExecResult r = vm.guest().exec("sh", "-c", "echo out; echo err >&2; exit 3");
        assertThat(r.stdoutText()).isEqualTo("out\n");
        assertThat(r.stderrText()).isEqualTo("err\n");
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(vm.guest().exec(ExecRequest.of("cat").stdin("to cat\n").build()).stdoutText()).isEqualTo("to cat\n");
        ExecResult env = vm.guest().exec(ExecRequest.of("sh", "-c", "echo \"$A|$B|$(pwd)\"").env("A", "it's").env("B", "x y")
                .workingDir("/proc").build());
        assertThat(env.stdoutText()).isEqualTo("it's|x y|/proc\n");
        assertThat(vm.guest().exec(ExecRequest.of("true").workingDir("/no/such/dir").build()).exitCode()).isEqualTo(126);
    }

    @Test
    void callbacksGetTheOutputWhileTheCommandRuns() {
        vm.guest().exec("sh", "-c", "rm -f /run/go && mkfifo /run/go").orThrow();
        List<String> seen = new CopyOnWriteArrayList<>();
        // The command prints "one", then blocks until the callback, having seen "one", writes to the FIFO.
        ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c", "echo one; read x < /run/go; echo \"two $x\"")
                .onStdout(bytes -> {
                    String text = new String(bytes, StandardCharsets.UTF_8);
                    seen.add(text);
                    if (text.contains("one")) vm.guest().exec("sh", "-c", "echo released > /run/go").orThrow();
                }).timeout(WAIT).build());
        assertThat(r.exitCode()).isZero();
        assertThat(String.join("", seen)).isEqualTo("one\ntwo released\n");
        assertThat(r.stdout()).as("a stream given to a callback is not kept").isEmpty();
    }

    @Test
    void aStartedProcessStreamsWhileItWaitsForInput() throws Exception {
        try (GuestProcess p = vm.guest().start("sh", "-c", "echo first; read line; echo \"got $line\"; echo done >&2")) {
            assertThat(p.pid()).isPositive();
            BufferedReader out = new BufferedReader(new InputStreamReader(p.stdout(), StandardCharsets.UTF_8));
            assertThat(out.readLine()).as("printed before its input came").isEqualTo("first");
            assertThat(p.isAlive()).isTrue();
            assertThat(p.exitCode()).isEmpty();
            p.stdin().write("hello\n".getBytes(StandardCharsets.UTF_8));
            assertThat(out.readLine()).isEqualTo("got hello");
            assertThat(out.readLine()).isNull();
            assertThat(p.waitFor(WAIT)).isZero();
            assertThat(p.exitCode()).hasValue(0);
            assertThat(new String(p.stderr().readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("done\n");
        }
    }

    @Test
    void bytesGoThroughUnchangedBothWays(@TempDir Path tmp) throws Exception {
        byte[] data = new byte[3 << 20];
        new Random(42).nextBytes(data);
        try (GuestProcess cat = vm.guest().start("cat")) {
            Thread writer = Thread.ofVirtual().start(() -> {
                try (var in = cat.stdin()) {
                    in.write(data);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            });
            byte[] back = cat.stdout().readAllBytes();
            writer.join();
            assertThat(cat.waitFor(WAIT)).isZero();
            assertThat(back).isEqualTo(data);
        }
        Path file = tmp.resolve("data");
        Files.write(file, data);
        vm.guest().copyIn(file, "/run/data");
        assertThat(vm.guest().exec("cat", "/run/data").stdout()).isEqualTo(data);
    }

    @Test
    void oneHundredMibOnStderrIsHeldBackNotBufferedAndAllArrives() throws Exception {
        long size = 100L << 20;
        try (GuestProcess p = vm.guest().start("sh", "-c", "head -c " + size + " /dev/zero >&2; echo end")) {
            InputStream err = p.stderr();
            byte[] buf = new byte[1 << 16];
            long total = 0;
            for (int n; (n = err.read(buf)) >= 0; ) total += n;
            assertThat(total).isEqualTo(size);
            assertThat(new String(p.stdout().readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("end\n");
            assertThat(p.waitFor(WAIT)).isZero();
        }
        AtomicLong counted = new AtomicLong();
        ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c", "head -c " + size + " /dev/zero >&2")
                .onStderr(b -> counted.addAndGet(b.length)).timeout(Duration.ofMinutes(5)).build());
        assertThat(r.exitCode()).isZero();
        assertThat(counted.get()).isEqualTo(size);
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sh", "-c", "head -c " + size + " /dev/zero")
                .timeout(Duration.ofMinutes(5)).build()))
                .isInstanceOf(GuestException.class).hasMessageContaining("more than 64 MiB to stdout");
    }

    @Test
    void aProcessThatClosesStdoutButRunsOnEndsItsStdoutOnly() throws Exception {
        try (GuestProcess p = vm.guest().start("sh", "-c", "echo before; exec >&-; read x; echo \"after $x\" >&2")) {
            assertThat(new String(p.stdout().readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("before\n");
            assertThat(p.isAlive()).as("its stdout ended, it did not").isTrue();
            p.stdin().write("input\n".getBytes(StandardCharsets.UTF_8));
            p.stdin().close();
            assertThat(p.waitFor(WAIT)).isZero();
            assertThat(new String(p.stderr().readAllBytes(), StandardCharsets.UTF_8)).isEqualTo("after input\n");
        }
    }

    @Test
    void signalsKillAndClose() {
        GuestProcess sleeper = vm.guest().start("sleep", "600");
        sleeper.signal(15);
        assertThat(sleeper.waitFor(WAIT)).as("128 + SIGTERM").isEqualTo(143);
        sleeper.signal(15); // exited already: nothing to do
        sleeper.kill();
        sleeper.close();

        // A daemon with children: close() kills the whole tree, orphans holding its output included.
        GuestProcess daemon = vm.guest().start("sh", "-c", "sleep 601 & sleep 602 & echo started; wait");
        assertThat(readLine(daemon.stdout())).isEqualTo("started");
        assertThat(vm.guest().exec("pidof", "sleep").stdoutText().trim().split(" ")).hasSize(2);
        daemon.close();
        assertThat(daemon.isAlive()).isFalse();
        assertThat(vm.guest().exec("pidof", "sleep").exitCode()).as("no sleep left").isEqualTo(1);
    }

    @Test
    void aTimeoutKillsTheTreeAndAnOrphanHoldingTheOutput() {
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sh", "-c", "sleep 603 & echo bg; exec sleep 604")
                .timeout(Duration.ofSeconds(3)).build()))
                .isInstanceOf(WaitTimeoutException.class).hasMessageContaining("killed it").hasMessageContaining("bg");
        assertThat(vm.guest().exec("pidof", "sleep").exitCode()).as("no sleep left").isEqualTo(1);
        // Its parent exits at once; the orphan keeps stdout open: the command is not done until it is killed.
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sh", "-c", "sleep 605 &")
                .timeout(Duration.ofSeconds(3)).build()))
                .isInstanceOf(WaitTimeoutException.class);
        assertThat(vm.guest().exec("pidof", "sleep").exitCode()).as("the orphan was killed too").isEqualTo(1);
        assertThat(vm.guest().exec("echo", "still works").stdoutText()).isEqualTo("still works\n");
    }

    @Test
    void aCommandWhoseDaemonLetsGoOfItsOutputSoonAfterReturnsThen() {
        // The daemon holds stdout past its parent's exit, then lets go of it (as daemons do): the command is done then.
        ExecResult r = vm.guest().exec(ExecRequest.of("sh", "-c", "(sleep 0.5; exec >/dev/null 2>&1; exec sleep 608) & echo parent")
                .timeout(Duration.ofSeconds(30)).build());
        assertThat(r.stdoutText()).isEqualTo("parent\n");
        vm.guest().exec("sh", "-c", "kill $(pidof sleep)");
    }

    @Test
    void aCallbackThatThrowsFailsItsExecAndTheSlotsWorkOn() {
        assertThatThrownBy(() -> vm.guest().exec(ExecRequest.of("sh", "-c", "echo one; echo two")
                .onStdout(b -> { throw new IllegalStateException("callback broke"); }).build()))
                .isInstanceOf(GuestException.class).hasMessageContaining("onStdout callback").hasMessageContaining("callback broke");
        assertThat(vm.guest().exec("echo", "after").stdoutText()).isEqualTo("after\n");
    }

    @Test
    void somethingLeftHoldingItsStdinDoesNotBreakTheNextCommandsStdin() {
        // The background sleep inherits the handle's stdin port and keeps it after the shell exited.
        try (GuestProcess p = vm.guest().start("sh", "-c", "sleep 609 >/dev/null 2>&1 & echo started")) {
            assertThat(readLine(p.stdout())).isEqualTo("started");
            assertThat(p.waitFor(WAIT)).isZero();
        }
        for (int i = 0; i < 3; i++) {
            assertThat(vm.guest().exec(ExecRequest.of("cat").stdin("in " + i).build()).stdoutText()).isEqualTo("in " + i);
        }
        vm.guest().exec("sh", "-c", "kill $(pidof sleep)");
    }

    @Test
    void aCommandThatIsNotThereIsAClearError() {
        assertThatThrownBy(() -> vm.guest().exec("no-such-command", "x"))
                .isInstanceOf(GuestException.class).hasMessageContaining("'no-such-command' is not a command");
        assertThatThrownBy(() -> vm.guest().start("no-such-command"))
                .isInstanceOf(GuestException.class).hasMessageContaining("'no-such-command' is not a command");
        assertThatThrownBy(() -> vm.guest().exec("/no/such/path"))
                .isInstanceOf(GuestException.class).hasMessageContaining("'/no/such/path' is not a command");
    }

    @Test
    void aHandleOutlivingItsMachineSaysSo() throws Exception {
        GuestProcess p;
        try (QemuMachine other = TestGuests.bootReady(QemuMachine.builder().image(TestGuests.image()))) {
            // A first command whose time runs out while its slot's shell starts leaves nothing that breaks the next.
            assertThatThrownBy(() -> other.guest().exec(ExecRequest.of("true").timeout(Duration.ofMillis(1)).build()))
                    .isInstanceOf(dev.kiln.KilnException.class);
            assertThat(other.guest().exec("echo", "next").stdoutText()).isEqualTo("next\n");
            p = other.guest().start("sleep", "600");
        }
        assertThat(p.isAlive()).isFalse();
        assertThatThrownBy(() -> p.waitFor(WAIT)).isInstanceOf(MachineClosedException.class).hasMessageContaining("[sleep, 600]");
        assertThatThrownBy(() -> p.stdin().write(1)).hasMessageContaining("exited");
        assertThatCode(() -> p.signal(15)).as("it exited (with its machine): nothing to signal").doesNotThrowAnyException();
        assertThatCode(p::close).doesNotThrowAnyException();
    }

    private static String readLine(InputStream in) {
        try {
            ByteArrayOutputStream line = new ByteArrayOutputStream();
            for (int c; (c = in.read()) >= 0 && c != '\n'; ) line.write(c);
            return line.toString(StandardCharsets.UTF_8);
        } catch (Exception e) {
            throw new RuntimeException(e);
        }
    }
}
