package dev.kiln;

import java.io.IOException;
import java.io.Reader;
import java.io.Writer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
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

    public Snapshot {
        Objects.requireNonNull(dir, "dir");
        info = Map.copyOf(info);
        Objects.requireNonNull(spec, "spec");
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

    /** The backend it was taken on. */
    public Backend backend() {
        return Backend.valueOf(info.get("backend"));
    }
}
