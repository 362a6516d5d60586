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
import java.time.Duration;
import java.time.Instant;
import java.util.HexFormat;

/**
 * {@code kiln run}'s booted guests, kept as templates in {@code <cache>/snapshots/<hash of the machine>}: the first run
 * of a machine boots it and saves it once ready, and every run, that one included, runs its command in a clone. A
 * template that no longer fits (another QEMU, a changed image) is dropped and the guest booted and saved again.
 */
final class BootSnapshots {
    private static final String PARTIAL = ".saving-";
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
     * Boots the machine and saves it as the template for later runs ({@link Snapshot#template}), moved into place only
     * once complete (runs making the same template at once: the last to finish replaces the others'). Returns whether
     * there is a template now; a failure is reported, and the run boots its guest instead.
     */
    boolean make(MachineSpec spec) {
        Path parent = dir.getParent();
        Path partial = null;
        try {
            Files.createDirectories(parent);
            sweepPartials(parent);
            partial = Files.createTempDirectory(parent, PARTIAL);
            Snapshot.template(spec, partial);
            WorkDir.delete(dir); // a template that no longer fitted, or --cold
            Files.move(partial, dir, StandardCopyOption.ATOMIC_MOVE);
            partial = null;
            return true;
        } catch (IOException | RuntimeException e) {
            // Losing a race to another run's save (its directory is there again) is no failure.
            boolean there = Files.isRegularFile(dir.resolve(Snapshot.INFO));
            if (!there) err.println("kiln: could not save the booted guest for later runs (" + firstLine(e.getMessage()) + "); booting it");
            return there;
        } finally {
            if (partial != null) WorkDir.delete(partial);
        }
    }

    /** Removes what runs killed while saving left: their partial templates, an hour old or more (no save takes that). */
    private static void sweepPartials(Path parent) throws IOException {
        Instant hourAgo = Instant.now().minus(Duration.ofHours(1));
        try (var dirs = Files.newDirectoryStream(parent, PARTIAL + "*")) {
            for (Path d : dirs) {
                if (Files.getLastModifiedTime(d).toInstant().isBefore(hourAgo)) WorkDir.delete(d);
            }
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
