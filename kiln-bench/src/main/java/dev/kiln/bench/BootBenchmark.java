package dev.kiln.bench;

import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.HostCpu;
import dev.kiln.support.WorkDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;

/**
 * End-to-end figures for BENCHMARKS.md, each against its peer measured in the same run:
 * raw QEMU boot to the ready marker vs {@code kiln run -- true} and vs Kiln's in-JVM boot to agent ready;
 * exec of {@code true} vs a raw fork+exec inside the guest; QMP {@code query-status} round trip.
 *
 * <p>Usage: {@code BootBenchmark [runs] [path to ./kiln]}.
 */
public final class BootBenchmark {
    public static void main(String[] args) throws Exception {
        boolean execOnly = args.length > 0 && args[0].equals("exec");
        if (execOnly) args = Arrays.copyOfRange(args, 1, args.length);
        int runs = args.length > 0 ? Integer.parseInt(args[0]) : 10;
        Path launcher = args.length > 1 ? Path.of(args[1]) : null;
        GuestImage image = DefaultImage.get(System.err::println);
        Accelerator.Choice accel = Accelerator.fromEnvironment().resolve();
        System.out.printf("host: %d cores, kernel %s; accelerator %s; %d runs each, interleaved%n",
                Runtime.getRuntime().availableProcessors(), Files.readString(Path.of("/proc/sys/kernel/osrelease")).strip(),
                accel, runs);

        if (!execOnly) boots(image, accel, runs, launcher);
        guestRoundTrips(image);
        try (QemuMachine vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).start()) {
            for (int i = 0; i < 500; i++) vm.command("query-status");
            List<Double> qmp = new ArrayList<>();
            for (int i = 0; i < 2000; i++) {
                long t = System.nanoTime();
                vm.command("query-status");
                qmp.add((System.nanoTime() - t) / 1e6);
            }
            report("QMP query-status round trip, paused VM with no guest", qmp);
        }
    }

    private static void boots(GuestImage image, Accelerator.Choice accel, int runs, Path launcher) throws Exception {
        List<Double> raw = new ArrayList<>(), cli = new ArrayList<>(), inJvm = new ArrayList<>();
        // warm-up of each path, not counted
        rawBoot(image, accel);
        kilnBoot(image);
        for (int i = 0; i < runs; i++) {
            raw.add(rawBoot(image, accel));
            inJvm.add(kilnBoot(image));
            if (launcher != null) cli.add(kilnRun(launcher));
        }
        report("raw qemu-system-x86_64 boot to KILN-READY (shell-started, console on stdio)", raw);
        report("Kiln in-JVM: start → guest agent answers", inJvm);
        System.out.printf("  ratio Kiln in-JVM / raw: %.2f%n", median(inJvm) / median(raw));
        if (!cli.isEmpty()) {
            report("`kiln run -- true` whole process (JVM start, boot, agent, exec, shutdown)", cli);
            System.out.printf("  ratio kiln run / raw: %.2f%n", median(cli) / median(raw));
        }
    }

    private static void guestRoundTrips(GuestImage image) {

        try (QemuMachine vm = QemuMachine.builder().image(image).start()) {
            for (int i = 0; i < 20; i++) vm.guest().exec("true");
            List<Double> exec = new ArrayList<>(), forkExec = new ArrayList<>(), qmp = new ArrayList<>();
            for (int round = 0; round < 5; round++) {
                for (int i = 0; i < 40; i++) {
                    long t = System.nanoTime();
                    vm.guest().exec("true");
                    exec.add((System.nanoTime() - t) / 1e6);
                }
                // the guest's own cost of one fork+exec of /bin/true, measured inside the guest
                ExecResult r = vm.guest().exec("sh", "-c",
                        "s=$(cat /proc/uptime); i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; e=$(cat /proc/uptime); echo $s $e");
                String[] f = r.stdoutText().trim().split("\\s+");
                forkExec.add((Double.parseDouble(f[2]) - Double.parseDouble(f[0])) * 1000 / 200);
            }
            for (int i = 0; i < 200; i++) vm.command("query-status");
            for (int i = 0; i < 2000; i++) {
                long t = System.nanoTime();
                vm.command("query-status");
                qmp.add((System.nanoTime() - t) / 1e6);
            }
            report("exec of `true` through the agent (host wall time)", exec);
            report("fork+exec of /bin/true inside the guest (its own clock, per call)", forkExec);
            System.out.printf("  ratio exec / guest fork+exec: %.2f%n", median(exec) / median(forkExec));
            report("QMP query-status round trip, guest running under the same QEMU", qmp);
        }
    }

    private static double rawBoot(GuestImage image, Accelerator.Choice accel) throws Exception {
        Path dir = WorkDir.create(Path.of(System.getProperty("java.io.tmpdir")), "kiln-bench-raw-");
        try {
            long khz = HostCpu.tscKhz();
            String cmd = String.join(" ",
                    "exec qemu-system-x86_64 -M microvm,rtc=on,isa-serial=on -accel", accel.accelerator().qemuName(),
                    "-m 256 -smp 1 -nodefaults -no-user-config -display none -vga none -no-reboot -serial stdio",
                    "-device virtio-serial-device -chardev socket,id=qga,server=on,wait=off,path=" + dir.resolve("qga.sock"),
                    "-device virtserialport,chardev=qga,name=org.qemu.guest_agent.0",
                    "-kernel", image.kernel().toString(), "-initrd", image.initrd().toString(),
                    "-append 'console=ttyS0", (khz > 0 ? "tsc_early_khz=" + khz : ""), image.cmdline() + "'");
            long t0 = System.nanoTime();
            Process p = new ProcessBuilder("/bin/sh", "-c", cmd).redirectErrorStream(true).start();
            try (BufferedReader r = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8))) {
                String line;
                while ((line = r.readLine()) != null) {
                    if (line.contains(image.readyMarker())) return (System.nanoTime() - t0) / 1e6;
                }
                throw new IllegalStateException("raw QEMU exited before the ready marker");
            } finally {
                p.destroyForcibly().waitFor();
            }
        } finally {
            WorkDir.delete(dir);
        }
    }

    private static double kilnBoot(GuestImage image) {
        long t0 = System.nanoTime();
        try (QemuMachine vm = QemuMachine.builder().image(image).start()) {
            double ms = (System.nanoTime() - t0) / 1e6;
            vm.kill();
            return ms;
        }
    }

    private static double kilnRun(Path launcher) throws Exception {
        long t0 = System.nanoTime();
        Process p = new ProcessBuilder(launcher.toString(), "run", "--quiet-timings", "--", "true")
                .redirectErrorStream(true).redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        if (p.waitFor() != 0) throw new IllegalStateException("kiln run failed: exit " + p.exitValue());
        return (System.nanoTime() - t0) / 1e6;
    }

    private static double median(List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        return a.length % 2 == 1 ? a[a.length / 2] : (a[a.length / 2 - 1] + a[a.length / 2]) / 2;
    }

    private static void report(String what, List<Double> xs) {
        double[] a = xs.stream().mapToDouble(Double::doubleValue).sorted().toArray();
        System.out.printf(Locale.ROOT, "%s: median %.3f ms (min %.3f, p90 %.3f, max %.3f, n=%d)%n", what, median(xs),
                a[0], a[(int) Math.min(a.length - 1, Math.round(a.length * 0.9))], a[a.length - 1], a.length);
        if (Arrays.stream(a).anyMatch(Double::isNaN)) throw new IllegalStateException("NaN in " + what);
    }
}
