package dev.kiln.cli;

import dev.kiln.ExecRequest;
import dev.kiln.GuestProcess;
import dev.kiln.Machine;
import dev.kiln.StartTimings;
import dev.kiln.qemu.QemuMachine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code kiln run -- CMD...}: boot a guest, run CMD in it, print its output and a timing breakdown. */
@Command(name = "run", mixinStandardHelpOptions = true,
        description = "Boots a guest (the default image unless --kernel is given), runs CMD in it with this command's "
                + "stdin, prints its output as it comes, exits with its exit code and prints a timing breakdown on stderr.")
final class RunCommand implements Callable<Integer> {
    /** Set by the launcher: when it started, and when it handed over to the JVM (epoch nanoseconds). */
    static final String LAUNCH_PROPERTY = "kiln.launch.epochNanos", EXEC_PROPERTY = "kiln.exec.epochNanos";

    @picocli.CommandLine.Mixin
    GuestOptions guest = new GuestOptions();

    @Option(names = "--quiet-timings", description = "do not print the timing breakdown")
    boolean noTimings;

    @Option(names = {"-n", "--no-stdin"}, description = "give CMD an empty stdin instead of this command's own")
    boolean noStdin;

    @Parameters(arity = "1..*", paramLabel = "CMD", description = "the command and its arguments (after --)")
    List<String> command = new ArrayList<>();

    @Override
    public Integer call() {
        PrintStream err = System.err;
        Instant mainAt = Instant.now();
        long t0 = System.nanoTime();
        Duration timeout = guest.timeout();
        GuestOptions.Started started = guest.start(err);
        Machine vm = started.machine();
        int exitCode;
        try (vm) {
            long tReady = System.nanoTime();
            exitCode = runStreaming(vm, timeout, err);
            long tExec = System.nanoTime();
            vm.shutdown(Duration.ofSeconds(10));
            long tDown = System.nanoTime();
            if (!noTimings) {
                err.printf("kiln: %s on %s; %s%n", describeVmm(vm), guest.describe(), started.how());
                err.println("kiln: " + breakdown(mainAt, t0, started.tStart(), started.tVm(), vm.startTimings(), tReady, tExec, tDown));
            }
        }
        return exitCode;
    }

    /**
     * Runs the command with its stdout and stderr copied out as they come and this process's stdin copied in (unless
     * --no-stdin); returns its exit code once it exited and its output was all printed.
     */
    private int runStreaming(Machine vm, Duration timeout, PrintStream err) {
        try (GuestProcess p = vm.guest().start(ExecRequest.of(command).build())) {
            Thread out = copy(p.stdout(), System.out, "stdout");
            Thread errCopy = copy(p.stderr(), err, "stderr");
            if (noStdin) {
                p.stdin().close();
            } else {
                // A daemon thread: it may block on a terminal the command never reads; nothing waits for it.
                InputStream stdin = System.in;
                Thread.ofPlatform().daemon().name("kiln-run-stdin").start(() -> forwardStdin(stdin, p, err));
            }
            int code = p.waitFor(timeout);
            out.join();
            errCopy.join();
            return code;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while running " + command, e);
        }
    }

    private static Thread copy(InputStream from, PrintStream to, String what) {
        return Thread.ofVirtual().name("kiln-run-" + what).start(() -> {
            byte[] buf = new byte[64 << 10];
            try {
                for (int n; (n = from.read(buf)) >= 0; ) {
                    to.write(buf, 0, n);
                    to.flush();
                }
            } catch (IOException e) {
                to.flush();
            }
        });
    }

    private static void forwardStdin(InputStream stdin, GuestProcess p, PrintStream err) {
        byte[] buf = new byte[64 << 10];
        try (OutputStream in = p.stdin()) {
            for (int n; (n = stdin.read(buf)) >= 0; ) {
                if (!p.isAlive()) return;
                in.write(buf, 0, n);
                in.flush();
            }
        } catch (IOException e) {
            if (p.isAlive()) err.println("kiln: stdin not forwarded: " + e.getMessage());
        }
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
