package dev.kiln;

import java.nio.file.Path;
import java.util.Objects;
import java.util.Optional;
import java.util.regex.Pattern;

/**
 * A disk of a {@link MachineSpec}: a virtio block device in the guest, on QEMU and on Firecracker.
 *
 * <pre>{@code
 * Drive.overlay(base)                      // copy-on-write over base, which is never written; gone with the machine
 * Drive.overlay(base, Path.of("vm1.qcow2")) // the same, kept at vm1.qcow2 and reused by the next machine
 * Drive.scratch(1 << 30).id("data")        // an empty 1 GiB disk, gone with the machine
 * Drive.file(image).readOnly()             // a file used as it is
 * }</pre>
 *
 * <p>The guest finds a drive by its {@link #id}: on QEMU it is the disk's serial ({@code /sys/block/vdX/serial},
 * {@code /dev/disk/by-id/virtio-<id>} under udev); Firecracker has no serials, and its drives appear in the order of
 * the spec ({@code vda}, {@code vdb}, …). Before the VMM starts, Kiln checks every file ({@code qemu-img info} and
 * {@code check}) and locks it for the machine's life: a file one machine writes cannot be used by another.
 *
 * <p>Firecracker reads raw disks only. Its overlays are sparse copies of the base (a qcow2 base is converted),
 * since it has no copy-on-write format; a qcow2 {@link #file} is refused.
 */
public final class Drive {
    private static final Pattern ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9_-]{0,19}");

    /** A disk file's format. */
    public enum Format {
        RAW("raw"), QCOW2("qcow2");

        private final String qemuName;

        Format(String qemuName) {
            this.qemuName = qemuName;
        }

        /** The name {@code qemu-img} and QEMU use. */
        public String qemuName() {
            return qemuName;
        }

        /** The format of a {@code qemu-img} format name, if it is one Kiln knows. */
        public static Optional<Format> ofQemuName(String name) {
            for (Format f : values()) if (f.qemuName.equals(name)) return Optional.of(f);
            return Optional.empty();
        }
    }

    /** Where a drive's data comes from. */
    public enum Kind {
        /** A file used in place: the guest writes it unless the drive is read-only. */
        FILE,
        /** Copy-on-write over a base file that is never written. */
        OVERLAY,
        /** An empty disk of a given size, gone with the machine. */
        SCRATCH
    }

    private final Kind kind;
    private final Path file;
    private final Path overlayFile;
    private final long sizeBytes;
    private final String id;
    private final Format format;
    private final boolean readOnly;

    private Drive(Kind kind, Path file, Path overlayFile, long sizeBytes, String id, Format format, boolean readOnly) {
        this.kind = kind;
        this.file = file;
        this.overlayFile = overlayFile;
        this.sizeBytes = sizeBytes;
        this.id = id;
        this.format = format;
        this.readOnly = readOnly;
    }

    /** {@code file} used in place, writable (the guest changes it); see {@link #readOnly()}. */
    public static Drive file(Path file) {
        return new Drive(Kind.FILE, absolute(file, "file"), null, 0, null, null, false);
    }

    /** A copy-on-write overlay over {@code base}, in the machine's work directory: it goes with the machine. */
    public static Drive overlay(Path base) {
        return new Drive(Kind.OVERLAY, absolute(base, "base"), null, 0, null, null, false);
    }

    /**
     * A copy-on-write overlay over {@code base} kept at {@code overlayFile}: made when it does not exist, reused when it
     * does (it must be an overlay over the same base), so what one machine wrote the next one finds.
     */
    public static Drive overlay(Path base, Path overlayFile) {
        return new Drive(Kind.OVERLAY, absolute(base, "base"), absolute(overlayFile, "overlayFile"), 0, null, null, false);
    }

    /** An empty, sparse disk of {@code sizeBytes} (a multiple of 512), in the machine's work directory. */
    public static Drive scratch(long sizeBytes) {
        if (sizeBytes < 512 || sizeBytes % 512 != 0) {
            throw new IllegalArgumentException("drives: a scratch disk's size must be a positive multiple of 512 bytes, got " + sizeBytes);
        }
        return new Drive(Kind.SCRATCH, null, null, sizeBytes, null, null, false);
    }

    /**
     * The name the guest finds the drive by: 1 to 20 letters, digits, '-' and '_' (a virtio serial holds 20 bytes).
     * Default: {@code disk0}, {@code disk1}… by position in the spec.
     */
    public Drive id(String id) {
        if (id == null || !ID.matcher(id).matches()) {
            throw new IllegalArgumentException("drives: an id must be 1 to 20 letters, digits, '-' and '_', starting with a"
                    + " letter or digit, got '" + id + "'");
        }
        return new Drive(kind, file, overlayFile, sizeBytes, id, format, readOnly);
    }

    /** The guest cannot write the drive (a read-only virtio disk); Kiln lets other machines read the file meanwhile. */
    public Drive readOnly() {
        if (kind == Kind.SCRATCH) throw new IllegalArgumentException("drives: a read-only scratch disk would be empty for ever");
        return new Drive(kind, file, overlayFile, sizeBytes, id, format, true);
    }

    /**
     * The format of the file (of the base, for an overlay). Default: what {@code qemu-img} finds, except that a file
     * named {@code *.qcow2} must be qcow2. Give it for a file a guest has written, so that its content cannot pass for
     * another format.
     */
    public Drive format(Format format) {
        if (kind == Kind.SCRATCH) throw new IllegalArgumentException("drives: a scratch disk is always raw");
        return new Drive(kind, file, overlayFile, sizeBytes, id, Objects.requireNonNull(format, "format"), readOnly);
    }

    public Kind kind() { return kind; }

    /** The file used in place ({@link Kind#FILE}) or the base ({@link Kind#OVERLAY}); null for scratch. */
    public Path file() { return file; }

    /** Where an overlay is kept; empty: in the work directory. */
    public Optional<Path> overlayFile() { return Optional.ofNullable(overlayFile); }

    /** A scratch disk's size; 0 for the other kinds. */
    public long sizeBytes() { return sizeBytes; }

    /** The id given; empty until the drive is in a spec, which names it by position. */
    public Optional<String> id() { return Optional.ofNullable(id); }

    public Optional<Format> format() { return Optional.ofNullable(format); }

    public boolean isReadOnly() { return readOnly; }

    private static Path absolute(Path p, String what) {
        return Objects.requireNonNull(p, "drives: " + what).toAbsolutePath().normalize();
    }

    @Override
    public boolean equals(Object o) {
        return o instanceof Drive d && kind == d.kind && Objects.equals(file, d.file) && Objects.equals(overlayFile, d.overlayFile)
                && sizeBytes == d.sizeBytes && Objects.equals(id, d.id) && format == d.format && readOnly == d.readOnly;
    }

    @Override
    public int hashCode() {
        return Objects.hash(kind, file, overlayFile, sizeBytes, id, format, readOnly);
    }

    @Override
    public String toString() {
        String what = switch (kind) {
            case FILE -> "file " + file;
            case OVERLAY -> "overlay over " + file + (overlayFile != null ? " kept at " + overlayFile : "");
            case SCRATCH -> "scratch " + Text.bytes(sizeBytes);
        };
        return (id != null ? id + ": " : "") + what + (format != null ? " (" + format.qemuName() + ")" : "")
                + (readOnly ? ", read-only" : "");
    }
}
