package dev.kiln.bench;

import dev.kiln.GuestImage;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.Snapshot;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.WorkDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;

/**
 * The snapshot part of {@code kiln bench}: a machine of the default image restored from a snapshot to its agent
 * answering, against the same machine cold-booted to the same point, interleaved; and what taking the snapshot costs.
 */
final class SnapshotBenchmark {
    private final PeerBenchmark bench;
    private final GuestImage image;
    private final int runs;
    private final Path scratch;

    SnapshotBenchmark(PeerBenchmark bench, GuestImage image, int runs, Path scratch) {
        this.bench = bench;
        this.image = image;
        this.runs = runs;
        this.scratch = scratch;
    }

    void run() throws Exception {
        System.err.println("kiln bench: snapshots of the default image (" + runs + " snapshots, restores and cold boots, interleaved)");
        MachineSpec spec = QemuMachine.builder().image(image).readyTimeout(Duration.ofSeconds(300)).spec();
        Path dir = WorkDir.create(scratch, "snapshots-");
        try {
            for (int i = -1; i < runs; i++) { // one unmeasured round first
                Path snapDir = dir.resolve("s" + (i + 1));
                long t0 = System.nanoTime();
                Snapshot snapshot;
                try (Machine vm = QemuMachine.create(spec).start()) {
                    long booted = System.nanoTime() - t0;
                    long t1 = System.nanoTime();
                    snapshot = vm.snapshot(snapDir);
                    long taken = System.nanoTime() - t1;
                    if (i >= 0) {
                        bench.sample("snapshot.boot", "cold boot: start() → agent answers").addNanos(booted);
                        bench.sample("snapshot.take", "snapshot(): pause, save memory and devices, copy disks, run on").addNanos(taken);
                        bench.sample("snapshot.size", "the saved state's size", "MiB").add(Files.size(snapDir.resolve(Snapshot.STATE)) / 1048576.0);
                    }
                }
                long t2 = System.nanoTime();
                try (Machine restored = snapshot.restore()) {
                    long ready = System.nanoTime() - t2;
                    restored.guest().exec("true").orThrow();
                    if (i >= 0) bench.sample("snapshot.restore", "restore: startFrom(snapshot) → agent answers, clock set").addNanos(ready);
                }
                if (i >= 0) {
                    System.err.printf(Locale.ROOT, "kiln bench: snapshot run %d/%d: cold boot %.0f ms, restore %.0f ms%n", i + 1, runs,
                            bench.lastOf("snapshot.boot"), bench.lastOf("snapshot.restore"));
                }
            }
        } finally {
            WorkDir.delete(dir);
        }
        bench.compare("default image: restore from a snapshot → agent ready vs cold boot → agent ready", "snapshot.restore",
                "snapshot.boot", "cold boot");
    }
}
