package dev.kiln;

import dev.kiln.vmm.VmmMachine;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.function.Consumer;
import java.util.Objects;
import java.util.Optional;
import java.util.Properties;
import java.util.TreeMap;

/**
 * A running machine saved at one instant into a directory: the VMM's state (memory and devices), a copy of every disk
 * the machine wrote, and what it was made of ({@value #INFO}). Any number of machines restore from it, each a whole
 * machine of its own — console, agent, cleanup — that goes on from that instant; the snapshot itself is never written.
 *
 * <pre>{@code
 * Snapshot booted = vm.snapshot(dir);                  // vm runs on
 * try (Machine a = booted.restore(); Machine b = booted.restore()) { … }
 * Machine later = Snapshot.open(dir).restore(spec);    // in another JVM: the same spec as the snapshot's machine
 * }</pre>
 *
 * @param dir  where it lives
 * @param info what it was taken from and with (the VMM's version, the machine's size, devices, image and disks); a
 *             restore refuses a spec or a VMM that differs
 * @param spec the spec of the machine it was taken from, when taken in this JVM; else empty, and
 *             {@link #restore(MachineSpec)} needs one
 */
public record Snapshot(Path dir, Map<String, String> info, Optional<MachineSpec> spec) {
    /** The VMM's saved state, in {@link #dir}. */
    public static final String STATE = "vmm-state";
    /** What the snapshot was taken from, in {@link #dir}. */
    public static final String INFO = "snapshot.properties";
    /** A template's RAM, in {@link #dir}: every restore maps it copy-on-write. */
    public static final String MEMORY = "memory";

    public Snapshot {
        Objects.requireNonNull(dir, "dir");
        info = Map.copyOf(info);
        Objects.requireNonNull(spec, "spec");
    }

    /**
     * Boots a machine from {@code spec}, lets {@code prepare} make it what every copy should start as, and saves it
     * into {@code dir} (empty or missing) as a template; the machine is then gone. On QEMU the template's RAM is the
     * file {@value #MEMORY} in {@code dir} and each restore maps it copy-on-write and loads only the devices' state:
     * restores start fast and share the pages none of them wrote. Keep {@code dir} on a fast file system (tmpfs for
     * throwaway templates); the file is as large as the guest's memory, sparse where the guest never wrote.
     */
    public static Snapshot template(MachineSpec spec, Path dir, Consumer<Machine> prepare) {
        Machine machine = Kiln.create(spec);
        if (!(machine instanceof VmmMachine vm)) throw new KilnException("templates need a machine of Kiln's own backends");
        try (machine) {
            vm.startTemplate(dir);
            prepare.accept(machine);
            return vm.freeze();
        }
    }

    /** {@link #template(MachineSpec, Path, Consumer)} of the machine as it is once ready. */
    public static Snapshot template(MachineSpec spec, Path dir) {
        return template(spec, dir, m -> {});
    }

    /** Reads a snapshot from its directory (its state and disks are checked when it is restored). */
    public static Snapshot open(Path dir) {
        Path file = dir.resolve(INFO);
        if (!Files.isRegularFile(file)) throw new KilnException(dir + " holds no snapshot (no " + INFO + ")");
        Properties p = new Properties();
        try (Reader r = Files.newBufferedReader(file)) {
            p.load(r);
        } catch (IOException | IllegalArgumentException e) {
            throw new KilnException("cannot read the snapshot " + file + ": " + e.getMessage(), e);
        }
        Map<String, String> info = new TreeMap<>();
        p.stringPropertyNames().forEach(k -> info.put(k, p.getProperty(k)));
        if (!info.containsKey("backend")) throw new KilnException(file + " is not a Kiln snapshot's description (no backend)");
        return new Snapshot(dir, info, Optional.empty());
    }

    /** Writes {@code info} as the snapshot's description in {@code dir}. */
    public static Snapshot write(Path dir, Map<String, String> info, MachineSpec spec) {
        Properties p = new Properties();
        info.forEach(p::setProperty);
        try (Writer w = Files.newBufferedWriter(dir.resolve(INFO))) {
            p.store(w, "Kiln snapshot");
        } catch (IOException e) {
            throw new KilnException("cannot write " + dir.resolve(INFO) + ": " + e.getMessage(), e);
        }
        return new Snapshot(dir, info, Optional.of(spec));
    }

    /** A new machine from this snapshot with the spec of the machine it was taken from (taken in this JVM). */
    public Machine restore() {
        return restore(spec.orElseThrow(() -> new KilnException("the snapshot " + dir + " was read from disk: restore(spec)"
                + " needs the spec of the machine it was taken from")));
    }

    /**
     * A new machine from this snapshot: {@code spec} must describe the same machine (size, devices, image); its
     * readiness probes, if it has any, run after the restore, else the guest agent is awaited. Returns it running.
     */
    public Machine restore(MachineSpec spec) {
        return Kiln.create(spec).startFrom(this);
    }

    /**
     * {@code count} machines restored from this snapshot at once (the spec it was taken with): returned running, or,
     * if any fails, none — those started are closed, and the first failure is thrown.
     */
    public List<Machine> restore(int count) {
        if (count < 1) throw new IllegalArgumentException("count must be at least 1, got " + count);
        List<CompletableFuture<Machine>> starts = new ArrayList<>();
        try (ExecutorService threads = Executors.newVirtualThreadPerTaskExecutor()) {
            for (int i = 0; i < count; i++) starts.add(CompletableFuture.supplyAsync(this::restore, threads));
        }
        List<Machine> started = new ArrayList<>();
        RuntimeException failure = null;
        for (CompletableFuture<Machine> f : starts) {
            try {
                started.add(f.join());
            } catch (CompletionException e) {
                if (failure == null) failure = e.getCause() instanceof RuntimeException r ? r : e;
            }
        }
        if (failure != null) {
            started.forEach(Machine::close);
            throw failure;
        }
        return started;
    }

    /** Whether its RAM is a file each restore maps copy-on-write ({@link #template}). */
    public boolean isTemplate() {
        return "file".equals(info.get("memory"));
    }

    /** The backend it was taken on. */
    public Backend backend() {
        return Backend.valueOf(info.get("backend"));
    }
}
