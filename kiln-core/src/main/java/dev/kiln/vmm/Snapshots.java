package dev.kiln.vmm;

import dev.kiln.Drive;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.Nic;
import dev.kiln.Snapshot;
import dev.kiln.disk.PreparedDrives;
import dev.kiln.vmm.spi.AttachedDrive;
import dev.kiln.vmm.spi.Launch;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.stream.Collectors;

/**
 * What a snapshot records of its machine, and the checks and drives of a restore. A snapshot's description lists what
 * the VMM's saved state depends on — size, devices, image, the VMM itself — and, per drive, either the copy in the
 * snapshot (a drive the machine wrote) or the file used in place with its size and modification time, so that a file
 * changed since is found before anything starts.
 */
final class Snapshots {
    static final String FORMAT = "1";
    /** The entries a restore's own description must match. */
    private static final List<String> MATCHED = List.of("backend", "cpus", "memoryMib", "kernelArgs", "nics", "vsock",
            "image.kernel", "image.initrd", "image.cmdline", "drives");

    private Snapshots() {}

    /** The entries a spec, an image and a VMM give, without the drives' files. */
    static Map<String, String> describe(MachineSpec spec, GuestImage image, List<Drive> drives, Map<String, String> vmm) {
        Map<String, String> info = new TreeMap<>();
        info.put("format", FORMAT);
        info.put("backend", spec.backend().name());
        info.put("cpus", Integer.toString(spec.cpus()));
        info.put("memoryMib", Integer.toString(spec.memoryMib()));
        info.put("kernelArgs", spec.kernelArgs());
        info.put("nics", spec.nics().stream().map(Snapshots::nicKind).collect(Collectors.joining(",")));
        info.put("vsock", spec.vsockCid().map(String::valueOf).orElse("none"));
        info.put("image.kernel", image.firmwareBoot() ? "none (bootable disk)" : image.kernel().toString());
        info.put("image.initrd", image.initrd() == null ? "none" : image.initrd().toString());
        info.put("image.cmdline", image.cmdline());
        info.put("drives", drives.stream().map(d -> d.id().orElseThrow()).collect(Collectors.joining(",")));
        for (Drive d : drives) {
            String key = "drive." + d.id().orElseThrow() + ".";
            info.put(key + "kind", d.kind().name().toLowerCase(Locale.ROOT) + (d.isReadOnly() ? ", read-only" : ""));
            if (d.kind() != Drive.Kind.SCRATCH) info.put(key + "source", d.file().toString());
        }
        info.putAll(vmm);
        return info;
    }

    private static String nicKind(Nic n) {
        return n.getClass().getSimpleName().toLowerCase(Locale.ROOT);
    }

    /**
     * The full description of a snapshot being taken into {@code dir}: every drive the machine writes is copied there
     * (the VMM is paused and has written its state, so the files are at rest); the rest are stamped where they are.
     */
    static Map<String, String> takeDrives(Path dir, Map<String, String> described, List<Drive> drives, List<AttachedDrive> attached) {
        Map<String, String> info = new TreeMap<>(described);
        info.put("created", Instant.now().toString());
        for (int i = 0; i < attached.size(); i++) {
            AttachedDrive a = attached.get(i);
            Drive d = drives.get(i);
            String key = "drive." + a.id() + ".";
            if (a.readOnly()) {
                // A read-only overlay lives in the machine's work dir and holds nothing of its own: its base is what counts.
                if (d.kind() == Drive.Kind.FILE) {
                    info.put(key + "file", a.file().toString());
                    info.put(key + "stamp", stamp(a.file()));
                }
            } else {
                String copy = "drive-" + a.id() + "." + a.format().qemuName();
                PreparedDrives.copySparse(a.file(), dir.resolve(copy));
                info.put(key + "copy", copy);
                // Recorded, never guessed on restore: a guest can write any header into a raw disk.
                info.put(key + "copyFormat", a.format().name());
            }
            if (d.kind() == Drive.Kind.OVERLAY) { // the copy of an overlay needs its base as it was
                info.put(key + "base", d.file().toString());
                info.put(key + "baseStamp", stamp(d.file()));
            }
        }
        return info;
    }

    /** Fails, naming each difference, unless the snapshot was taken of a machine like this one, with files unchanged. */
    static void check(Snapshot snapshot, Map<String, String> now) {
        Map<String, String> was = snapshot.info();
        String where = "cannot restore the snapshot in " + snapshot.dir() + ": ";
        if (!FORMAT.equals(was.get("format"))) {
            throw new KilnException(where + "it is of format " + was.get("format") + ", and this Kiln reads format " + FORMAT);
        }
        // The listed entries, and every vmm.* entry and drive's kind and source on either side.
        Set<String> keys = new LinkedHashSet<>(MATCHED);
        for (Map<String, String> side : List.of(now, was)) {
            side.keySet().stream().filter(k -> k.startsWith("vmm.") || k.startsWith("drive.") && (k.endsWith(".kind")
                    || k.endsWith(".source"))).sorted().forEach(keys::add);
        }
        List<String> differences = new ArrayList<>();
        for (String k : keys) {
            String a = was.getOrDefault(k, "(none)"), b = now.getOrDefault(k, "(none)");
            if (!a.equals(b)) differences.add(k + " was " + a + ", and is now " + b);
        }
        if (!differences.isEmpty()) {
            throw new KilnException(where + "it was taken of another machine or VMM (" + String.join("; ", differences)
                    + "); restore it with the spec and the VMM it was taken with");
        }
        Path state = snapshot.dir().resolve(Snapshot.STATE);
        if (!Files.isRegularFile(state)) throw new KilnException(where + "its saved state " + state + " is missing");
        for (String id : was.getOrDefault("drives", "").split(",")) {
            if (id.isEmpty()) continue;
            String key = "drive." + id + ".";
            String copy = was.get(key + "copy");
            if (copy != null && !Files.isRegularFile(snapshot.dir().resolve(copy))) {
                throw new KilnException(where + "drive " + id + ": its copy " + snapshot.dir().resolve(copy) + " is missing");
            }
            checkStamp(where + "drive " + id + ": ", was.get(key + "file"), was.get(key + "stamp"));
            checkStamp(where + "drive " + id + ": the base of its overlay, ", was.get(key + "base"), was.get(key + "baseStamp"));
        }
    }

    private static void checkStamp(String where, String file, String stamp) {
        if (file == null) return;
        Path p = Path.of(file);
        if (!Files.isRegularFile(p)) throw new KilnException(where + file + " is gone");
        String now = stamp(p);
        if (!now.equals(stamp)) {
            throw new KilnException(where + file + " has changed since the snapshot was taken (size and time " + stamp
                    + ", now " + now + "): the saved guest would see a disk it does not know");
        }
    }

    /** The drives of a restore: overlays over the snapshot's copies where the machine wrote, the rest as they were. */
    static List<Drive> drivesFrom(Snapshot snapshot, List<Drive> drives) {
        List<Drive> out = new ArrayList<>();
        for (Drive d : drives) {
            String key = "drive." + d.id().orElseThrow() + ".";
            String copy = snapshot.info().get(key + "copy");
            if (copy == null) {
                out.add(d);
                continue;
            }
            Drive.Format format = Drive.Format.valueOf(snapshot.info().getOrDefault(key + "copyFormat", "QCOW2"));
            out.add(Drive.overlay(snapshot.dir().resolve(copy)).format(format).id(d.id().orElseThrow()));
        }
        return out;
    }

    /**
     * Records the RAM file of a template (its VMM gone): its pages reach the disk, so that the template outlives a
     * crash of the host, and its stamp is kept, so that a file changed since is found.
     */
    static void takeMemory(Map<String, String> info, Path file) {
        try (var channel = java.nio.channels.FileChannel.open(file, java.nio.file.StandardOpenOption.WRITE)) {
            channel.force(true);
        } catch (IOException e) {
            throw new KilnException("cannot write the template's memory " + file + " to disk: " + e.getMessage(), e);
        }
        info.put("memory", "file");
        info.put("memory.stamp", stamp(file));
    }

    /**
     * The RAM file a restore maps copy-on-write, or null when the snapshot holds its memory in its state; fails when
     * the file has changed since or the VMM cannot map one.
     */
    static Launch.MemoryFile memoryOf(Snapshot snapshot, boolean supported) {
        if (!"file".equals(snapshot.info().get("memory"))) return null;
        String where = "cannot restore the template in " + snapshot.dir() + ": ";
        if (!supported) throw new KilnException(where + "its memory is a file, and this VMM cannot map one");
        Path file = snapshot.dir().resolve(Snapshot.MEMORY);
        checkStamp(where + "its memory ", file.toString(), snapshot.info().get("memory.stamp"));
        return new Launch.MemoryFile(file, false);
    }

    static String joinMacs(List<String> macs) {
        return macs.stream().map(m -> m == null ? "-" : m).collect(Collectors.joining(","));
    }

    /** The MAC of each NIC of the saved machine (null: the VMM's choice). */
    static List<String> nicMacs(Snapshot snapshot) {
        String macs = snapshot.info().getOrDefault("nic.macs", "");
        if (macs.isEmpty()) return List.of();
        return java.util.Arrays.stream(macs.split(",")).map(m -> m.equals("-") ? null : m).toList();
    }

    /** Size and modification time, as a file's identity for a snapshot. */
    private static String stamp(Path file) {
        try {
            return Files.size(file) + "@" + Files.getLastModifiedTime(file).toMillis();
        } catch (IOException e) {
            throw new KilnException("cannot read " + file + ": " + e.getMessage(), e);
        }
    }

    /** Removes what a failed snapshot left in {@code dir}. */
    static void removePartial(Path dir, boolean made) {
        try (var files = Files.list(dir)) {
            for (Path f : files.toList()) Files.deleteIfExists(f);
            if (made) Files.deleteIfExists(dir);
        } catch (IOException ignored) {
            // best effort: the caller reports the snapshot's own failure
        }
    }
}
