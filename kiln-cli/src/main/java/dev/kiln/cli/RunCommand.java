package dev.kiln.cli;

import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import dev.kiln.qemu.QemuMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code kiln run -- CMD...}: boot a guest, run CMD in it, print its output and a timing breakdown. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Boots a guest (the default image unless --kernel is given), runs CMD in it, prints its "
                + "output, exits with its exit code and prints a timing breakdown on stderr.")
final class RunCommand implements Callable<Integer> {
    @Option(names = "--memory", description = "guest memory in MiB (default ${DEFAULT-VALUE})", defaultValue = "256")
    int memoryMib;

    @Option(names = "--cpus", description = "virtual CPUs (default ${DEFAULT-VALUE})", defaultValue = "1")
    int cpus;

    @Option(names = "--accel", description = "auto, kvm or tcg (default: $KILN_ACCEL or auto)")
    String accel;

    @Option(names = "--kernel", description = "boot this kernel instead of the default image's")
    Path kernel;

    @Option(names = "--initrd", description = "with --kernel: the initramfs")
    Path initrd;

    @Option(names = "--append", description = "extra kernel arguments")
    String append;

    @Option(names = "--timeout", description = "limit for boot and for CMD, in seconds (default ${DEFAULT-VALUE})",
            defaultValue = "120")
    int timeoutSeconds;

    @Option(names = "--quiet-timings", description = "do not print the timing breakdown")
    boolean noTimings;

    @Parameters(arity = "1..*", paramLabel = "CMD", description = "the command and its arguments (after --)")
    List<String> command = new ArrayList<>();

    @Override
    public Integer call() {
        PrintStream err = System.err;
        Duration timeout = Duration.ofSeconds(timeoutSeconds);
        long t0 = System.nanoTime();
        // start-up until here (launcher and JVM), from the process start time (10 ms resolution)
        long jvmMs = ProcessHandle.current().info().startInstant()
                .map(i -> java.time.Duration.between(i, java.time.Instant.now()).toMillis()).orElse(-1L);
        GuestImage image;
        if (kernel != null) {
            image = new GuestImage(kernel, initrd, "", null, false, kernel.toString());
        } else {
            if (initrd != null) throw new IllegalArgumentException("--initrd needs --kernel");
            image = DefaultImage.get(line -> err.println(line));
        }
        long tImage = System.nanoTime();
        QemuMachine.Builder b = QemuMachine.builder().image(image).memoryMib(memoryMib).cpus(cpus)
                .launchTimeout(timeout);
        if (accel != null) b.accelerator(Accelerator.parse(accel));
        if (append != null) b.append(append);
        QemuMachine vm = b.build();
        int exitCode;
        long tSpawned, tQmp, tGuest, tExec, tDown;
        try (vm) {
            vm.start();
            long started = System.nanoTime();
            tSpawned = tImage + vm.timings().spawnNanos;
            tQmp = tImage + vm.timings().qmpReadyNanos;
            vm.guest().awaitReady(timeout);
            tGuest = System.nanoTime();
            ExecResult r = vm.guest().exec(ExecRequest.of(command).timeout(timeout).build());
            tExec = System.nanoTime();
            System.out.write(r.stdout(), 0, r.stdout().length);
            System.out.flush();
            err.write(r.stderr(), 0, r.stderr().length);
            err.flush();
            exitCode = r.exitCode();
            vm.shutdown(Duration.ofSeconds(10));
            tDown = System.nanoTime();
            if (!noTimings) {
                err.printf("kiln: %s on %s, %d MiB, %d vCPU%n", vm.accelerator(), image.description(), memoryMib, cpus);
                err.printf("kiln: startup %s | image %s | spawn %s | QMP ready %s | guest ready %s | exec %s | shutdown %s | total %s%n",
                        jvmMs < 0 ? "?" : jvmMs + " ms", ms(tImage - t0), ms(tSpawned - tImage), ms(tQmp - tSpawned),
                        ms(tGuest - Math.max(tQmp, started)), ms(tExec - tGuest), ms(tDown - tExec), ms(tDown - t0));
            }
        }
        return exitCode;
    }

    private static String ms(long nanos) {
        return String.format("%.1f ms", nanos / 1e6);
    }
}
