package dev.kiln.cli;

import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.Snapshot;
import dev.kiln.support.KilnCache;
import dev.kiln.support.WorkDir;

import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;

/**
 * {@code kiln run}'s booted guests, kept as snapshots in {@code <cache>/snapshots/<hash of the machine>}: the first run
 * of a machine boots it and saves it once ready, before the command runs; later runs restore it. A snapshot that no
 * longer fits (another QEMU, a changed image) is dropped and the guest booted again.
 */
final class BootSnapshots {
    private final Path dir;
    private final PrintStream err;

    BootSnapshots(MachineSpec spec, String vmmKey, PrintStream err) {
        this.dir = KilnCache.root().resolve("snapshots").resolve(key(spec, vmmKey));
        this.err = err;
    }

    /** The cached snapshot restored as a running machine, or null when there is none or it no longer fits. */
    Machine restore(MachineSpec spec) {
        if (!Files.isRegularFile(dir.resolve(Snapshot.INFO))) return null;
        try {
            return Snapshot.open(dir).restore(spec);
        } catch (RuntimeException e) {
            err.println("kiln: the saved guest in " + dir + " cannot be used (" + firstLine(e.getMessage()) + "); booting instead");
            // Dropped when it no longer fits or cannot be read or loaded; a wait that timed out may pass next time.
            if (!String.valueOf(e.getMessage()).contains("timed out")) WorkDir.delete(dir);
            return null;
        }
    }

    /**
     * Saves the freshly booted {@code vm} for later runs, moved into place only once complete (runs saving the same
     * machine at once: the last to finish replaces the others'). A failure costs only the saving: it is reported and
     * the run goes on.
     */
    void save(Machine vm) {
        Path parent = dir.getParent();
        Path partial = null;
        try {
            Files.createDirectories(parent);
            partial = Files.createTempDirectory(parent, ".saving-");
            vm.snapshot(partial);
            WorkDir.delete(dir); // a snapshot that no longer fitted, or --cold
            Files.move(partial, dir, StandardCopyOption.ATOMIC_MOVE);
            partial = null;
        } catch (IOException | RuntimeException e) {
            // Losing a race to another run's save (its directory is there again) is no failure.
            if (!Files.isRegularFile(dir.resolve(Snapshot.INFO))) {
                err.println("kiln: could not save the booted guest for later runs (" + firstLine(e.getMessage()) + ")");
            }
        } finally {
            if (partial != null) WorkDir.delete(partial);
        }
    }

    Path dir() {
        return dir;
    }

    /** What the saved state depends on: the machine's size, image and kernel arguments, and the VMM's choice. */
    private static String key(MachineSpec spec, String vmmKey) {
        StringBuilder b = new StringBuilder().append(spec.backend()).append('\0').append(spec.cpus()).append('\0')
                .append(spec.memoryMib()).append('\0').append(spec.kernelArgs()).append('\0').append(vmmKey);
        spec.image().ifPresent(i -> b.append('\0').append(i.kernel()).append('\0').append(i.initrd()).append('\0')
                .append(i.cmdline()).append('\0').append(i.rootDisk()));
        try {
            byte[] digest = MessageDigest.getInstance("SHA-256").digest(b.toString().getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(digest, 0, 8);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String firstLine(String s) {
        return s == null ? "" : s.strip().lines().findFirst().orElse("");
    }
}
