package dev.kiln.cli;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

import static org.assertj.core.api.Assertions.assertThat;

/** The `kiln` command in-process, against real QEMU. */
class KilnCommandTest {
    record Outcome(int code, String out, String err) {}

    private static synchronized Outcome kiln(String... args) {
        PrintStream oldOut = System.out, oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            CommandLine cl = new CommandLine(new KilnCommand());
            cl.setExecutionExceptionHandler((e, c, p) -> {
                System.err.println("kiln: " + e.getMessage());
                return 2;
            });
            int code = cl.execute(args);
            return new Outcome(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }

    private static void requireQemu() {
        Assumptions.assumeTrue(Executables.find("qemu-system-x86_64").isPresent(), "qemu-system-x86_64 not on PATH: install qemu-system-x86 to run this test");
    }

    @Test
    void runPrintsTheCommandsOutputExitsWithItsCodeAndPrintsTimings() {
        requireQemu();
        Outcome o = kiln("run", "--", "sh", "-c", "uname -s; exit 5");
        assertThat(o.code()).as(o.err()).isEqualTo(5);
        assertThat(o.out()).isEqualTo("Linux\n");
        assertThat(o.err()).contains("spawn").contains("QMP ready").contains("guest ready").contains("exec")
                .contains("shutdown").containsPattern("kiln: (tcg|kvm) \\(");
    }

    @Test
    void badOptionsAreNamed() {
        Outcome accel = kiln("run", "--accel", "warp", "--", "true");
        assertThat(accel.code()).isEqualTo(2);
        assertThat(accel.err()).contains("unknown accelerator 'warp'");
        Outcome kernel = kiln("run", "--kernel", "/nonexistent/vmlinuz", "--", "true");
        assertThat(kernel.code()).isEqualTo(2);
        assertThat(kernel.err()).contains("kernel not found: /nonexistent/vmlinuz");
        Outcome noCommand = kiln("run");
        assertThat(noCommand.code()).isEqualTo(2);
        assertThat(noCommand.err()).contains("CMD");
    }

    @Test
    void doctorReportsQemuAcceleratorImageAndJava() {
        requireQemu();
        Outcome o = kiln("doctor");
        assertThat(o.out()).contains("QEMU: ").contains("accelerator: ").contains("cache: ").contains("Java: 25");
    }
}
