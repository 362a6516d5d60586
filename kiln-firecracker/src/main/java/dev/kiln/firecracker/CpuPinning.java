package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.os.Affinity;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;

/**
 * Pins Firecracker's threads to CPUs by their names: the VMM thread is the main thread, the API server is
 * {@code fc_api}, and vCPU {@code n} is {@code fc_vcpu n} (those exist once the guest was started).
 */
public final class CpuPinning {
    private final long pid;

    public CpuPinning(long pid) {
        this.pid = pid;
    }

    /** The tids of the process's threads named {@code name} ({@code /proc/PID/task/TID/comm}). */
    public List<Long> threadsNamed(String name) {
        List<Long> tids = new ArrayList<>();
        try (Stream<Path> tasks = Files.list(Path.of("/proc", Long.toString(pid), "task"))) {
            for (Path task : tasks.toList()) {
                try {
                    if (Files.readString(task.resolve("comm")).strip().equals(name)) tids.add(Long.parseLong(task.getFileName().toString()));
                } catch (IOException gone) {
                    // the thread ended meanwhile
                }
            }
        } catch (IOException e) {
            throw new KilnException("cannot list the threads of pid " + pid + ": " + e.getMessage(), e);
        }
        return tids;
    }

    /** Pins the VMM (main) thread. */
    public void pinVmm(int cpu) {
        Affinity.set(pid, Set.of(cpu));
    }

    /** Pins the API server thread. */
    public void pinApi(int cpu) {
        pinNamed("fc_api", cpu, "the API server thread (none with --no-api)");
    }

    /** Pins the thread of vCPU {@code index}; the guest must have been started. */
    public void pinVcpu(int index, int cpu) {
        pinNamed("fc_vcpu " + index, cpu, "vCPU " + index + "'s thread (vCPU threads exist once the guest was started)");
    }

    private void pinNamed(String name, int cpu, String what) {
        List<Long> tids = threadsNamed(name);
        if (tids.isEmpty()) throw new KilnException("Firecracker pid " + pid + " has no thread named '" + name + "': cannot pin " + what);
        for (long tid : tids) Affinity.set(tid, Set.of(cpu));
    }
}
