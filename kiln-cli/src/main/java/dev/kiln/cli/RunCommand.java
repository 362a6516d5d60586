package dev.kiln.cli;

import dev.kiln.Backend;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestImage;
import dev.kiln.Kiln;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.StartTimings;
import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import dev.kiln.qemu.QemuMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code kiln run -- CMD...}: boot a guest, run CMD in it, print its output and a timing breakdown. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Boots a guest (the default image unless --kernel is given), runs CMD in it, prints its "
                + "output, exits with its exit code and prints a timing breakdown on stderr.")
final class RunCommand implements Callable<Integer> {
    /** Set by the launcher: when it started, and when it handed over to the JVM (epoch nanoseconds). */
    static final String LAUNCH_PROPERTY = "kiln.launch.epochNanos", EXEC_PROPERTY = "kiln.exec.epochNanos";

    @Option(names = "--backend", description = "qemu or firecracker (default: $KILN_BACKEND, else qemu)")
    String backend;

    @Option(names = "--memory", description = "guest memory in MiB (default ${DEFAULT-VALUE})", defaultValue = "256")
    int memoryMib;

    @Option(names = "--cpus", description = "virtual CPUs (default ${DEFAULT-VALUE})", defaultValue = "1")
    int cpus;

    @Option(names = "--accel", description = "QEMU: auto, kvm or tcg (default: $KILN_ACCEL or auto)")
    String accel;

    @Option(names = "--image", description = "default (Kiln's initramfs guest) or debian (systemd on a disk; built when"
            + " needed, with --packages, --release, --size)", defaultValue = "default")
    String imageKind;

    @picocli.CommandLine.ArgGroup(exclusive = false)
    ImageCommand.DebianOptions debian = new ImageCommand.DebianOptions();

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

    @Option(names = "--cold", description = "boot the guest and save it anew, even when a saved one is cached")
    boolean cold;

    @Parameters(arity = "1..*", paramLabel = "CMD", description = "the command and its arguments (after --)")
    List<String> command = new ArrayList<>();

    @Override
    public Integer call() {
        PrintStream err = System.err;
        Instant mainAt = Instant.now();
        long t0 = System.nanoTime();
        Duration timeout = Duration.ofSeconds(timeoutSeconds);
        Backend chosen = backend != null ? Backend.parse(backend) : Backend.fromEnvironment();
        if (accel != null && chosen != Backend.QEMU) throw new IllegalArgumentException("--accel is QEMU's; this run is on " + chosen.displayName());
        Accelerator accelerator = accel != null ? Accelerator.parse(accel) : null;
        if (chosen == Backend.FIRECRACKER) FirecrackerMachine.requireGuestBootableHost(); // before an image is built for nothing
        GuestImage image;
        if (kernel != null) {
            if (!imageKind.equals("default")) throw new IllegalArgumentException("--kernel and --image are alternatives");
            image = new GuestImage(kernel, initrd, "", null, false, kernel.toString());
        } else {
            if (initrd != null) throw new IllegalArgumentException("--initrd needs --kernel");
            image = switch (imageKind) {
                case "default" -> {
                    if (!debian.isDefault()) throw new IllegalArgumentException("--packages, --release, --size, --copy and --build-run need --image debian");
                    yield DefaultImage.get(err::println);
                }
                case "debian" -> debian.builder().build(err::println);
                default -> throw new IllegalArgumentException("unknown --image '" + imageKind + "': default or debian");
            };
        }
        MachineSpec spec = MachineSpec.builder().backend(chosen).image(image).memoryMib(memoryMib).cpus(cpus)
                .kernelArgs(append != null ? append : "").launchTimeout(timeout).readyTimeout(timeout).build();
        if (accelerator != null) spec = QemuMachine.builder().from(spec).accelerator(accelerator).spec();
        // QEMU guests are booted once and saved as a template; every run then clones it. Firecracker's cannot be yet.
        BootSnapshots saved = chosen == Backend.QEMU && image.agent()
                ? new BootSnapshots(spec, accelerator != null ? accelerator.name() : String.valueOf(System.getenv("KILN_ACCEL")), err) : null;
        long tStart = System.nanoTime();
        long tVm = tStart; // the machine the command runs in starts here: after the template, when this run makes it
        Machine cloned = saved != null && !cold ? saved.restore(spec) : null;
        boolean made = false;
        if (cloned == null && saved != null) {
            made = saved.make(spec);
            tVm = System.nanoTime();
            if (made) cloned = saved.restore(spec);
        }
        if (cloned == null) tVm = System.nanoTime();
        Machine vm = cloned != null ? cloned : Kiln.create(spec);
        int exitCode;
        try (vm) {
            if (cloned == null) vm.start();
            long tReady = System.nanoTime();
            ExecResult r = vm.guest().exec(ExecRequest.of(command).timeout(timeout).build());
            long tExec = System.nanoTime();
            System.out.write(r.stdout(), 0, r.stdout().length);
            System.out.flush();
            err.write(r.stderr(), 0, r.stderr().length);
            err.flush();
            exitCode = r.exitCode();
            vm.shutdown(Duration.ofSeconds(10));
            long tDown = System.nanoTime();
            if (!noTimings) {
                err.printf("kiln: %s on %s, %d MiB, %d vCPU; %s%n", describeVmm(vm), image.description(), memoryMib, cpus,
                        cloned == null ? "booted" : made ? "booted, saved as the template for later runs in " + saved.dir() + ", and cloned"
                                : "cloned from the saved guest " + saved.dir() + " (--cold boots it anew)");
                err.println("kiln: " + breakdown(mainAt, t0, tStart, tVm, vm.startTimings(), tReady, tExec, tDown));
            }
        }
        return exitCode;
    }

    private static String describeVmm(Machine vm) {
        return vm instanceof QemuMachine q ? q.accelerator().toString() : vm.backend().displayName() + " (kvm)";
    }

    /**
     * The phases from the launcher's start to the end, each the difference of two consecutive instants, so that they
     * add up to the total: setup (the launcher's build or AOT preparation, when it had any), JVM start, image, spawn,
     * template (the first run of a machine: its boot and save), spawn, VMM up (for a clone: the saved devices loaded),
     * guest ready, exec, shutdown.
     */
    static String breakdown(Instant mainAt, long t0, long tStart, long tVm, StartTimings start, long tReady, long tExec, long tDown) {
        Map<String, Long> phases = new LinkedHashMap<>();
        Long launch = Long.getLong(LAUNCH_PROPERTY), exec = Long.getLong(EXEC_PROPERTY);
        long mainEpoch = mainAt.getEpochSecond() * 1_000_000_000L + mainAt.getNano();
        long jvmFrom = mainEpoch;
        if (exec != null) {
            if (launch != null && exec - launch > 0) phases.put("setup", exec - launch);
            jvmFrom = exec;
        } else if (launch != null) {
            jvmFrom = launch;
        }
        phases.put("JVM start", Math.max(0, mainEpoch - jvmFrom));
        phases.put("image", tStart - t0);
        if (tVm != tStart) phases.put("template", tVm - tStart);
        long spawned = tVm + start.spawnedAfter().orElseThrow().toNanos();
        long up = tVm + start.vmmUpAfter().orElseThrow().toNanos();
        phases.put("spawn", spawned - tVm);
        phases.put("VMM up", up - spawned);
        phases.put("guest ready", tReady - up);
        phases.put("exec", tExec - tReady);
        phases.put("shutdown", tDown - tExec);
        long total = phases.values().stream().mapToLong(Long::longValue).sum();
        StringBuilder b = new StringBuilder();
        phases.forEach((name, nanos) -> b.append(name).append(' ').append(ms(nanos)).append(" | "));
        return b.append("total ").append(ms(total)).toString();
    }

    private static String ms(long nanos) {
        return String.format("%.1f ms", nanos / 1e6);
    }
}
