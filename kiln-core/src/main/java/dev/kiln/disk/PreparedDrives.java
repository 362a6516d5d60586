package dev.kiln.disk;

import dev.kiln.Drive;
import dev.kiln.KilnException;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.support.HostCommand;
import dev.kiln.vmm.spi.AttachedDrive;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/**
 * A machine's drives made ready before its VMM starts: each file checked ({@code qemu-img info}, {@code check}),
 * overlays and scratch disks made in the work directory, and every file the machine uses locked — shared where it only
 * reads, exclusive where it writes — until {@link #close()}. So a missing or corrupt image fails the start with what
 * is wrong, instead of a guest that waits for its root disk, and two machines never write one file.
 *
 * <p>The locks are {@code flock}s on files Kiln holds open (close-on-exec): they go with the JVM, however it ends.
 */
public final class PreparedDrives implements AutoCloseable {
    private final List<AttachedDrive> attached = new ArrayList<>();
    private final List<Fd> locks = new ArrayList<>();

    private PreparedDrives() {}

    /**
     * Prepares {@code drives} (each with its id) in {@code workDir}; {@code rawOnly} for a VMM that reads raw disks
     * only (Firecracker: its overlays are raw copies). On failure, releases what it took and throws.
     */
    public static PreparedDrives prepare(List<Drive> drives, Path workDir, boolean rawOnly) {
        PreparedDrives prepared = new PreparedDrives();
        try {
            for (Drive d : drives) prepared.attached.add(prepared.prepare(d, workDir, rawOnly));
            return prepared;
        } catch (RuntimeException | Error e) {
            prepared.close();
            throw e;
        }
    }

    public List<AttachedDrive> attached() {
        return List.copyOf(attached);
    }

    private AttachedDrive prepare(Drive d, Path workDir, boolean rawOnly) {
        String id = d.id().orElseThrow();
        try {
            return switch (d.kind()) {
                case FILE -> inPlace(d, id, rawOnly);
                case OVERLAY -> overlay(d, id, workDir, rawOnly);
                case SCRATCH -> scratch(d, id, workDir);
            };
        } catch (KilnException e) {
            throw new KilnException("drive " + d + ": " + e.getMessage(), e);
        }
    }

    private AttachedDrive inPlace(Drive d, String id, boolean rawOnly) {
        lock(d.file(), !d.isReadOnly());
        Drive.Format format = checkedFormat(d.file(), d.format().orElse(null));
        if (rawOnly && format == Drive.Format.QCOW2) {
            throw new KilnException("Firecracker reads raw disks only, and " + d.file() + " is qcow2; convert it"
                    + " (qemu-img convert -O raw) or use Drive.overlay(base), which Kiln converts");
        }
        return new AttachedDrive(id, d.file(), format, d.isReadOnly());
    }

    private AttachedDrive overlay(Drive d, String id, Path workDir, boolean rawOnly) {
        Path base = d.file();
        lock(base, false);
        Drive.Format baseFormat = checkedFormat(base, d.format().orElse(null));
        Drive.Format format = rawOnly ? Drive.Format.RAW : Drive.Format.QCOW2;
        Path target = d.overlayFile().orElse(workDir.resolve("drive-" + id + (rawOnly ? ".raw" : ".qcow2")));
        if (!Files.exists(target)) {
            // Made under a temporary name, then linked into place: link(2) fails if another machine got there first.
            Path partial = target.resolveSibling("." + target.getFileName() + ".kiln-" + ProcessHandle.current().pid() + "-" + System.nanoTime());
            try {
                if (!rawOnly) QemuImg.createOverlay(partial, base, baseFormat);
                else if (baseFormat == Drive.Format.QCOW2) QemuImg.convertToRaw(base, baseFormat, partial);
                else copySparse(base, partial);
                try {
                    Files.createLink(target, partial);
                } catch (java.nio.file.FileAlreadyExistsException racedBy) {
                    // another machine made it meanwhile: use that one, checked below
                }
            } catch (IOException e) {
                throw new KilnException("cannot make " + target + ": " + e.getMessage(), e);
            } finally {
                deleteQuietly(partial);
            }
        }
        lock(target, !d.isReadOnly());
        QemuImg.Info info = QemuImg.info(target, format);
        if (!rawOnly) {
            Path backing = info.backingFile().orElse(null);
            if (backing == null || !sameFile(backing, base)) {
                throw new KilnException(target + " exists but is not an overlay over " + base + " (its base: "
                        + (backing == null ? "none" : backing) + "); remove it, or keep this machine's overlay elsewhere");
            }
            QemuImg.check(target);
        }
        return new AttachedDrive(id, target, format, d.isReadOnly());
    }

    private AttachedDrive scratch(Drive d, String id, Path workDir) {
        Path file = workDir.resolve("drive-" + id + ".raw");
        try (RandomAccessFile f = new RandomAccessFile(file.toFile(), "rw")) {
            f.setLength(d.sizeBytes()); // sparse: no block is written until the guest writes
        } catch (IOException e) {
            throw new KilnException("cannot make the scratch disk " + file + ": " + e.getMessage(), e);
        }
        return new AttachedDrive(id, file, Drive.Format.RAW, false);
    }

    /** The file's format as given, else as found; a qcow2 file is checked for corruption. */
    private static Drive.Format checkedFormat(Path file, Drive.Format given) {
        QemuImg.Info info = QemuImg.info(file, given);
        Drive.Format format = given != null ? given : info.format().orElseThrow(() -> new KilnException(
                "qemu-img finds a " + info.formatName() + " image in " + file + "; Kiln attaches raw and qcow2 disks"
                        + " (qemu-img convert -O qcow2 turns it into one)"));
        if (given == null && format != Drive.Format.QCOW2 && file.getFileName().toString().endsWith(".qcow2")) {
            throw new KilnException(file + " is named .qcow2 but qemu-img finds no qcow2 header in it (it reads as "
                    + info.formatName() + "): a damaged image? Say Drive.format(RAW) if it really is a raw disk");
        }
        if (format == Drive.Format.QCOW2) QemuImg.check(file);
        return format;
    }

    /** Opens {@code file} and locks it for this machine: exclusively when the machine writes it. */
    private void lock(Path file, boolean exclusive) {
        if (!Files.exists(file)) throw new KilnException("there is no file " + file);
        if (!Files.isRegularFile(file)) throw new KilnException(file + " is not a regular file");
        Fd fd = Posix.open(file, exclusive);
        try {
            if (!Posix.tryFlock(fd, !exclusive)) {
                throw new KilnException(file + " is in use by another machine, and " + (exclusive
                        ? "this one would write it: give each machine its own overlay (Drive.overlay), or make the drives read-only"
                        : "that one writes it"));
            }
        } catch (RuntimeException e) {
            fd.close();
            throw e;
        }
        locks.add(fd);
    }

    /** Copies a disk file keeping its holes (and sharing its blocks where the file system can). */
    public static void copySparse(Path from, Path to) {
        HostCommand.Result r = HostCommand.run(List.of("cp", "--sparse=always", "--reflink=auto", from.toString(), to.toString()),
                null, Duration.ofMinutes(30), "copy of " + from);
        if (!r.ok()) throw new KilnException("cannot copy " + from + " to " + to + ": " + r.complaint());
    }

    private static boolean sameFile(Path a, Path b) {
        try {
            return Files.isSameFile(a, b);
        } catch (IOException e) {
            return false;
        }
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // a leftover partial file next to a kept overlay is harmless; the work dir goes anyway
        }
    }

    /** Releases every lock. */
    @Override
    public void close() {
        for (Fd fd : locks) fd.close();
        locks.clear();
    }
}
