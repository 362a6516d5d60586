package dev.kiln.bench;

import dev.kiln.GuestImage;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.image.DebianImage;
import dev.kiln.Snapshot;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.WorkDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Locale;

/**
 * The snapshot part of {@code kiln bench}: a machine of the default image restored from a snapshot, and cloned from a
 * template, to its agent answering, against the same machine cold-booted to the same point, interleaved; what taking
 * the snapshot costs; then {@value #CLONES} clones of one template started at once, and their memory (PSS) against
 * one cold-booted guest's.
 */
final class SnapshotBenchmark {
    static final int CLONES = 8;
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
            long t = System.nanoTime();
            Snapshot template = Snapshot.template(spec, dir.resolve("template"));
            bench.sample("snapshot.template", "Snapshot.template(): boot, save the devices, stop").addNanos(System.nanoTime() - t);
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
                timeRestore(snapshot, "snapshot.restore", "restore: startFrom(snapshot)", i >= 0);
                timeRestore(template, "snapshot.clone", "clone: template.restore()", i >= 0);
                if (i >= 0) {
                    System.err.printf(Locale.ROOT, "kiln bench: snapshot run %d/%d: cold boot %.0f ms, restore %.0f ms, clone %.0f ms%n",
                            i + 1, runs, bench.lastOf("snapshot.boot"), bench.lastOf("snapshot.restore"), bench.lastOf("snapshot.clone"));
                }
            }
            bench.sample("snapshot.template.file", "the template's memory file: blocks written (du)", "MiB")
                    .add(allocatedMib(template.dir().resolve(Snapshot.MEMORY)));
            clones(spec, template);
            debian(dir);
        } finally {
            WorkDir.delete(dir);
        }
        bench.compare("default image: restore from a snapshot → agent ready vs cold boot → agent ready", "snapshot.restore.agent",
                "snapshot.boot", "cold boot");
        bench.compare("default image: clone of a template → agent ready vs cold boot → agent ready", "snapshot.clone.agent",
                "snapshot.boot", "cold boot");
        bench.compare("default image: clone of a template → returned (clock and identity set) vs cold boot → agent ready",
                "snapshot.clone", "snapshot.boot", "cold boot");
        bench.compare("Debian image: clone of a template → agent ready vs cold boot → agent ready", "snapshot.debian.clone.agent",
                "snapshot.debian.boot", "cold boot");
        bench.compare("Debian image: clone of a template → returned (clock and identity set) vs cold boot → agent ready",
                "snapshot.debian.clone", "snapshot.debian.boot", "cold boot");
        bench.compare("default image: memory (PSS) of " + CLONES + " running clones vs one cold-booted guest", "snapshot.clones.pss",
                "snapshot.one.pss", "one guest");
    }

    /**
     * {@value #CLONES} clones at once, per run: the wall time of {@code restore(8)} and their summed PSS once each has
     * run a command, against one cold-booted guest's PSS at the same point.
     */
    private void clones(MachineSpec spec, Snapshot template) {
        System.err.println("kiln bench: " + CLONES + " clones of one template at once, and their memory (" + runs + " rounds)");
        for (int i = 0; i < runs; i++) {
            try (Machine one = QemuMachine.create(spec).start()) {
                one.guest().exec("true").orThrow();
                bench.sample("snapshot.one.pss", "one cold-booted guest's QEMU: PSS", "MiB").add(pssMib(one));
            }
            long t = System.nanoTime();
            List<Machine> clones = template.restore(CLONES);
            try {
                bench.sample("snapshot.clones.start", "restore(" + CLONES + "): all " + CLONES + " clones started, agents answering")
                        .addNanos(System.nanoTime() - t);
                double pss = 0;
                for (Machine m : clones) m.guest().exec("true").orThrow(); // each has run a command before any is measured
                for (Machine m : clones) pss += pssMib(m);
                bench.sample("snapshot.clones.pss", CLONES + " clones' QEMUs: summed PSS", "MiB").add(pss);
            } finally {
                clones.forEach(Machine::close);
            }
            System.err.printf(Locale.ROOT, "kiln bench: clones round %d/%d: %d clones in %.0f ms, PSS %.0f MiB vs one guest %.0f MiB%n",
                    i + 1, runs, CLONES, bench.lastOf("snapshot.clones.start"), bench.lastOf("snapshot.clones.pss"), bench.lastOf("snapshot.one.pss"));
        }
    }

    /** The Debian image (no extra packages, 512 MiB): cold boots and clones of one template, interleaved. */
    private void debian(Path dir) {
        System.err.println("kiln bench: the Debian image: " + runs + " cold boots and clones of one template, interleaved");
        GuestImage debian = DebianImage.builder().build(line -> { });
        MachineSpec spec = QemuMachine.builder().image(debian).memoryMib(512).readyTimeout(Duration.ofSeconds(300)).spec();
        Snapshot template = Snapshot.template(spec, dir.resolve("debian-template"));
        for (int i = 0; i < runs; i++) {
            long t = System.nanoTime();
            try (Machine vm = QemuMachine.create(spec).start()) {
                bench.sample("snapshot.debian.boot", "Debian, cold boot: start() → agent answers").addNanos(System.nanoTime() - t);
            }
            timeRestore(template, "snapshot.debian.clone", "Debian, clone: template.restore()", true);
            System.err.printf(Locale.ROOT, "kiln bench: Debian run %d/%d: cold boot %.0f ms, clone %.0f ms (agent %.0f ms)%n", i + 1, runs,
                    bench.lastOf("snapshot.debian.boot"), bench.lastOf("snapshot.debian.clone"), bench.lastOf("snapshot.debian.clone.agent"));
        }
    }

    private static double allocatedMib(Path file) {
        try {
            Process p = new ProcessBuilder("du", "-k", file.toString()).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            p.waitFor();
            return Long.parseLong(out.split("\\s+")[0]) / 1024.0;
        } catch (java.io.IOException | InterruptedException | NumberFormatException e) {
            throw new IllegalStateException("du " + file + ": " + e, e);
        }
    }

    /**
     * Restores {@code from} and, when {@code record}, adds its start → agent answering as {@code key.agent} and its start →
     * returned (clock and identity set) as {@code key}.
     */
    private void timeRestore(Snapshot from, String key, String what, boolean record) {
        long t = System.nanoTime();
        try (Machine m = from.restore()) {
            long returned = System.nanoTime() - t;
            m.guest().exec("true").orThrow();
            if (record) {
                bench.sample(key + ".agent", what + " → agent answers").add(agentReady(m));
                bench.sample(key, what + " → returned: agent answers, clock and identity set").addNanos(returned);
            }
        }
    }

    /** From start to the agent answering, before the clock and identity are set (milliseconds). */
    private static double agentReady(Machine m) {
        return m.startTimings().readyAfter().orElseThrow().toNanos() / 1e6;
    }

    /** The proportional set size of the machine's VMM process: shared pages count once across their sharers. */
    static double pssMib(Machine m) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/" + m.pid().orElseThrow() + "/smaps_rollup"))) {
                if (line.startsWith("Pss:")) return Long.parseLong(line.replaceAll("[^0-9]", "")) / 1024.0;
            }
        } catch (java.io.IOException e) {
            throw new java.io.UncheckedIOException(e);
        }
        throw new IllegalStateException("no Pss line in smaps_rollup of " + m.id());
    }
}
