package dev.kiln.disk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.kiln.Drive;
import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/** QEMU's disk image tool: what a file holds, whether it is sound, overlays and conversions. */
public final class QemuImg {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Duration QUICK = Duration.ofMinutes(2), CONVERSION = Duration.ofMinutes(30);

    private QemuImg() {}

    /**
     * What {@code qemu-img info} says of a file.
     *
     * @param formatName  qemu-img's name of the format it found (or was told)
     * @param virtualSize the disk's size as the guest sees it
     * @param backingFile the file a copy-on-write image reads what it has not written from, as an absolute path
     */
    public record Info(String formatName, long virtualSize, Optional<Path> backingFile) {
        public Optional<Drive.Format> format() {
            return Drive.Format.ofQemuName(formatName);
        }
    }

    /** {@code qemu-img info} of {@code file}, read as {@code format} (null: the format it finds). */
    public static Info info(Path file, Drive.Format format) {
        List<String> cmd = new ArrayList<>(List.of(binary(), "info", "--output=json"));
        if (format != null) cmd.addAll(List.of("-f", format.qemuName()));
        cmd.add(file.toString());
        HostCommand.Result r = HostCommand.run(cmd, null, QUICK, "qemu-img info of " + file);
        if (!r.ok()) throw new KilnException("qemu-img cannot read " + file + ": " + r.complaint());
        try {
            JsonNode n = JSON.readTree(r.stdout());
            String backing = n.path("full-backing-filename").asText(n.path("backing-filename").asText(""));
            Path backingPath = backing.isEmpty() ? null : file.toAbsolutePath().getParent().resolve(backing).normalize();
            return new Info(n.path("format").asText(), n.path("virtual-size").asLong(), Optional.ofNullable(backingPath));
        } catch (Exception e) {
            throw new KilnException("qemu-img info of " + file + " printed what Kiln cannot read: " + r.stdout(), e);
        }
    }

    /**
     * {@code qemu-img check} of a qcow2 file: throws when it finds corruption or cannot check; leaked clusters (space
     * lost after a crash, harmless) pass.
     */
    public static void check(Path file) {
        HostCommand.Result r = HostCommand.run(List.of(binary(), "check", "-f", "qcow2", file.toString()), null, QUICK,
                "qemu-img check of " + file);
        switch (r.exitCode()) {
            case 0, 3 -> { } // sound; or leaks only
            case 2 -> throw new KilnException(file + " is corrupt; qemu-img check says:\n"
                    + Text.tail((r.stderr() + r.stdout()).strip(), 3000));
            default -> throw new KilnException("qemu-img cannot check " + file + ": " + r.complaint());
        }
    }

    /** Makes {@code overlay}, a qcow2 file that reads what it has not written from {@code base} and never writes it. */
    public static void createOverlay(Path overlay, Path base, Drive.Format baseFormat) {
        HostCommand.Result r = HostCommand.run(List.of(binary(), "create", "-q", "-f", "qcow2", "-b", base.toAbsolutePath().toString(),
                "-F", baseFormat.qemuName(), overlay.toString()), null, QUICK, "qemu-img create of an overlay over " + base);
        if (!r.ok()) throw new KilnException("qemu-img cannot make an overlay over " + base + ": " + r.complaint());
    }

    /** Writes {@code from}'s disk as a sparse raw file {@code to}. */
    public static void convertToRaw(Path from, Drive.Format fromFormat, Path to) {
        HostCommand.Result r = HostCommand.run(List.of(binary(), "convert", "-q", "-f", fromFormat.qemuName(), "-O", "raw",
                from.toString(), to.toString()), null, CONVERSION, "qemu-img convert of " + from + " to raw");
        if (!r.ok()) throw new KilnException("qemu-img cannot convert " + from + " to raw: " + r.complaint());
    }

    private static String binary() {
        return Executables.find("qemu-img").map(Path::toString).orElseThrow(() -> new KilnException(
                "qemu-img is not on PATH; Kiln needs it for drives (apt-get install qemu-utils)"));
    }
}
