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
        java.io.InputStream oldIn = System.in;
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        try {
            System.setIn(java.io.InputStream.nullInputStream()); // the test JVM's own stdin is the test runner's
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
            System.setIn(oldIn);
        }
    }

    private static void requireQemu() {
        Assumptions.assumeTrue(Executables.find("qemu-system-x86_64").isPresent(), "qemu-system-x86_64 not on PATH: install qemu-system-x86 to run this test");
    }

    @Test
    void runPrintsTheCommandsOutputExitsWithItsCodeAndPrintsTimings() {
        requireQemu();
        long t0 = System.nanoTime();
        Outcome o = kiln("run", "--", "sh", "-c", "uname -s; exit 5");
        double wallMs = (System.nanoTime() - t0) / 1e6;
        assertThat(o.code()).as(o.err()).isEqualTo(5);
        assertThat(o.out()).isEqualTo("Linux\n");
        assertThat(o.err()).containsPattern("kiln: (tcg|kvm) \\(");
        // The breakdown: every phase, and they add up to the total (each is the gap between two instants).
        var line = java.util.regex.Pattern.compile("kiln: (JVM start .*) \\| total ([\\d.]+) ms").matcher(o.err());
        assertThat(line.find()).as(o.err()).isTrue();
        java.util.Map<String, Double> phases = new java.util.LinkedHashMap<>();
        for (String phase : line.group(1).split(" \\| ")) {
            var m = java.util.regex.Pattern.compile("(.+) ([\\d.]+) ms").matcher(phase);
            assertThat(m.matches()).as(phase).isTrue();
            phases.put(m.group(1), Double.parseDouble(m.group(2)));
        }
        java.util.List<String> always = java.util.List.of("JVM start", "image", "spawn", "VMM up", "guest ready", "exec", "shutdown");
        assertThat(phases).containsKeys(always.toArray(String[]::new)); // and "template" when the guest was booted and saved
        assertThat(phases.keySet()).isSubsetOf(java.util.stream.Stream.concat(always.stream(), java.util.stream.Stream.of("template")).toList());
        double sum = phases.values().stream().mapToDouble(Double::doubleValue).sum();
        assertThat(sum).as("the phases %s against the total", phases).isCloseTo(Double.parseDouble(line.group(2)),
                org.assertj.core.data.Offset.offset(0.1 * phases.size())); // each is rounded to 0.1 ms
        assertThat(phases.get("guest ready")).isPositive();
        // In process there is no launcher: the total is the run's own time, which the test measured around it.
        assertThat(Double.parseDouble(line.group(2))).as("total against the wall time around the call").isBetween(wallMs - 1000, wallMs);
    }

    /**
     * `kiln run` in a process of its own, its stdio pipes: the command's first line is read before anything is written
     * to its stdin, so it was printed while the command ran; then its input is forwarded and its exit code passed on.
     */
    @Test
    void runPrintsAsTheCommandGoesAndForwardsItsStdin() throws Exception {
        requireQemu();
        String javaBin = ProcessHandle.current().info().command().orElseThrow();
        Process p = new ProcessBuilder(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp", System.getProperty("java.class.path"),
                KilnCommand.class.getName(), "run", "--quiet-timings", "--",
                "sh", "-c", "echo first; read x; echo \"got $x\"; exit 7").redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try (var out = new java.io.BufferedReader(new java.io.InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
             var in = p.getOutputStream()) {
            assertThat(out.readLine()).as("printed before the command had its input").isEqualTo("first");
            in.write("hello\n".getBytes(StandardCharsets.UTF_8));
            in.flush();
            assertThat(out.readLine()).isEqualTo("got hello");
            assertThat(p.waitFor(120, java.util.concurrent.TimeUnit.SECONDS)).isTrue();
            assertThat(p.exitValue()).isEqualTo(7);
        } finally {
            p.destroyForcibly();
        }
    }

    @Test
    void aSecondRunClonesTheGuestTheFirstSavedAndOneThatNoLongerFitsIsBootedAgain() throws java.io.IOException {
        requireQemu();
        // Where KASLR put the kernel: random at each boot, the same in every restore of one boot.
        String[] kernelBase = {"grep", "-m1", " _text$", "/proc/kallsyms"};
        Outcome first = kiln(java.util.stream.Stream.concat(java.util.stream.Stream.of("run", "--cold", "--"), java.util.Arrays.stream(kernelBase)).toArray(String[]::new));
        assertThat(first.code()).as(first.err()).isZero();
        assertThat(first.err()).contains("booted, saved as the template for later runs in ").contains("| template ");
        assertThat(first.out()).as("the kernel's address, visible to root").matches("[0-9a-f]{16} T _text\\n").doesNotStartWith("0000");
        Outcome second = kiln(java.util.stream.Stream.concat(java.util.stream.Stream.of("run", "--"), java.util.Arrays.stream(kernelBase)).toArray(String[]::new));
        assertThat(second.code()).as(second.err()).isZero();
        assertThat(second.err()).contains("cloned from the saved guest").doesNotContain("| template ");
        assertThat(second.out()).as("the same boot, gone on from where it was saved").isEqualTo(first.out());

        var saved = java.util.regex.Pattern.compile("saved as the template for later runs in ([^\\s,]+)").matcher(first.err());
        assertThat(saved.find()).isTrue();
        java.nio.file.Path info = java.nio.file.Path.of(saved.group(1)).resolve(dev.kiln.Snapshot.INFO);
        java.nio.file.Files.writeString(info, java.nio.file.Files.readString(info).replaceFirst("vmm.version=[^\\n]*", "vmm.version=QEMU 1.0"));
        Outcome third = kiln("run", "--", "true");
        assertThat(third.code()).as(third.err()).isZero();
        assertThat(third.err()).contains("cannot be used (").contains("vmm.version was QEMU 1.0").contains("booting instead")
                .contains("booted, saved as the template for later runs in ");
    }

    @Test
    void onFirecrackerWithoutUsableKvmRunExitsAtOnceSayingWhy() {
        String fc = System.getenv("FIRECRACKER_BIN");
        Assumptions.assumeTrue(fc != null && Executables.find(fc).isPresent(), "FIRECRACKER_BIN is not set: point it at a Firecracker release binary");
        Assumptions.assumeFalse(dev.kiln.support.HostKvm.usable(), "this host has real KVM: the guest would boot");
        Outcome o = kiln("run", "--backend", "firecracker", "--", "uname", "-a");
        assertThat(o.code()).isEqualTo(2);
        assertThat(o.err()).contains("Firecracker cannot boot a guest on this host: it needs real KVM")
                .contains(dev.kiln.support.HostKvm.whyUnusable()).doesNotContain("\tat ");
        assertThat(o.out()).isEmpty();
    }

    @Test
    void runOnADebianImageWithAPackageBuildsItOnceAndRunsTheCommandUnderSystemd() {
        requireQemu();
        Outcome run = kiln("run", "--image", "debian", "--packages", "nginx-light", "--timeout", "300", "--",
                "systemctl", "is-active", "nginx");
        assertThat(run.code()).as(run.err()).isZero();
        assertThat(run.out()).isEqualTo("active\n");
        Outcome list = kiln("image", "list");
        assertThat(list.code()).as(list.err()).isZero();
        assertThat(list.out()).containsPattern("(?m)^[0-9a-f]{12,}\\s.*bookworm.*nginx-light");
        Outcome again = kiln("image", "build", "debian", "--packages", "nginx-light");
        assertThat(again.code()).as(again.err()).isZero();
        assertThat(again.err()).doesNotContain("mmdebstrap"); // cached: nothing is bootstrapped again
    }

    @Test
    void runOnABootableImageWithoutAnAgentGoesThroughCloudInitAndSshAndSeesTheShare(@org.junit.jupiter.api.io.TempDir
                                                                                     java.nio.file.Path dir) throws java.io.IOException {
        requireQemu();
        java.nio.file.Files.writeString(dir.resolve("hello.txt"), "shared from the host\n");
        // The same image as kiln-image's and kiln-qemu's tests of bootable disks: built once per run.
        Outcome run = kiln("run", "--image", "debian", "--bootable", "--no-agent", "--packages", "cloud-init,openssh-server,sudo",
                "--share", dir + ":/mnt/host:ro", "--timeout", "300", "--", "sh", "-c",
                "cat /mnt/host/hello.txt; cloud-init status; test -e /usr/sbin/qemu-ga || echo no agent");
        assertThat(run.code()).as(run.err()).isZero();
        assertThat(run.out()).isEqualTo("shared from the host\nstatus: done\nno agent\n");
    }

    @Test
    void debianOptionsWithoutADebianImageAreNamed() {
        Outcome packages = kiln("run", "--packages", "nginx-light", "--", "true");
        assertThat(packages.code()).isEqualTo(2);
        assertThat(packages.err()).contains("need --image debian");
        Outcome image = kiln("run", "--image", "alpine", "--", "true");
        assertThat(image.code()).isEqualTo(2);
        assertThat(image.err()).contains("unknown --image 'alpine': default or debian");
        Outcome rm = kiln("image", "rm", "kiln-no-such-hash");
        assertThat(rm.code()).isEqualTo(2);
        assertThat(rm.err()).contains("no cached Debian image matches 'kiln-no-such-hash'");
    }

    @Test
    void badOptionsAreNamed() {
        Outcome accel = kiln("run", "--accel", "warp", "--", "true");
        assertThat(accel.code()).isEqualTo(2);
        assertThat(accel.err()).contains("unknown accelerator 'warp'");
        Outcome kernel = kiln("run", "--kernel", "/nonexistent/vmlinuz", "--", "true");
        assertThat(kernel.code()).isEqualTo(2);
        assertThat(kernel.err()).contains("kernel not found: /nonexistent/vmlinuz");
        Outcome backend = kiln("run", "--backend", "bochs", "--", "true");
        assertThat(backend.code()).isEqualTo(2);
        assertThat(backend.err()).contains("unknown backend 'bochs': use qemu or firecracker");
        Outcome uefi = kiln("run", "--uefi", "--", "true");
        assertThat(uefi.code()).isEqualTo(2);
        assertThat(uefi.err()).contains("--uefi needs a disk its firmware boots");
        Outcome share = kiln("run", "--share", "/tmp", "--", "true");
        assertThat(share.code()).isEqualTo(2);
        assertThat(share.err()).contains("DIR:GUESTPATH");
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
