package dev.kiln.disk;

import dev.kiln.KilnException;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Small disks Kiln makes for a machine from host data, without mounting anything: a cloud-init NoCloud volume (a FAT
 * volume labelled {@code CIDATA}, by mtools) and an ext4 disk holding a directory's tree ({@code mke2fs -d}).
 */
public final class GuestVolumes {
    private static final Duration LIMIT = Duration.ofMinutes(10);

    private GuestVolumes() {}

    /** Writes a NoCloud cidata volume to {@code file}: each entry of {@code files} (name → content) at the volume's root. */
    public static void cloudInitVolume(Path file, Map<String, String> files) {
        require("mformat", "mtools");
        Path staging = file.resolveSibling(file.getFileName() + ".d");
        try {
            Files.createDirectories(staging);
            // A 1.44 MB floppy's FAT12: cloud-init finds it by its label, and its files are a few KiB.
            run(List.of("mformat", "-C", "-i", file.toString(), "-f", "1440", "-v", "CIDATA", "::"), "mformat of the cloud-init volume");
            List<String> copy = new ArrayList<>(List.of("mcopy", "-i", file.toString()));
            for (Map.Entry<String, String> f : files.entrySet()) {
                Path p = staging.resolve(f.getKey());
                Files.writeString(p, f.getValue(), StandardCharsets.UTF_8);
                copy.add(p.toString());
            }
            copy.add("::");
            run(copy, "mcopy into the cloud-init volume");
        } catch (IOException e) {
            throw new KilnException("cannot write the cloud-init volume " + file + ": " + e.getMessage(), e);
        } finally {
            try (var s = Files.exists(staging) ? Files.list(staging) : java.util.stream.Stream.<Path>empty()) {
                for (Path p : s.toList()) Files.deleteIfExists(p);
                Files.deleteIfExists(staging);
            } catch (IOException ignored) {
                // in the machine's work dir: removed with it
            }
        }
    }

    /**
     * Makes {@code file} an ext4 disk holding {@code dir}'s tree (owners and modes kept), sized to it with room to spare
     * for the file system's own blocks. For a read-only share on a VMM without shared folders.
     */
    public static void directoryDisk(Path dir, Path file) {
        require("mke2fs", "e2fsprogs");
        long bytes;
        try (var all = Files.walk(dir)) {
            bytes = all.filter(Files::isRegularFile).mapToLong(p -> {
                try {
                    return (Files.size(p) + 4095) / 4096 * 4096;
                } catch (IOException e) {
                    return 0;
                }
            }).sum();
        } catch (IOException e) {
            throw new KilnException("cannot read the shared directory " + dir + ": " + e.getMessage(), e);
        }
        long mib = Math.max(16, bytes * 5 / 4 / (1 << 20) + 16);
        run(List.of("mke2fs", "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-L", "kiln-share", "-d", dir.toString(),
                file.toString(), mib + "M"), "mke2fs -d of " + dir);
    }

    private static void run(List<String> command, String what) {
        HostCommand.Result r = HostCommand.run(command, null, LIMIT, what);
        if (!r.ok()) throw new KilnException(what + " failed (exit " + r.exitCode() + "): " + r.complaint());
    }

    private static void require(String tool, String pkg) {
        if (Executables.find(tool).isEmpty()) {
            throw new KilnException(tool + " is not on PATH (" + Executables.path() + "); install " + pkg + " (apt-get install " + pkg + ")");
        }
    }
}
