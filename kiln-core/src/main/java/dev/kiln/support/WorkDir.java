package dev.kiln.support;

import dev.kiln.KilnException;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileVisitResult;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.SimpleFileVisitor;
import java.nio.file.attribute.BasicFileAttributes;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Instant;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

/**
 * A machine's private directory (mode 0700) for its sockets, logs and FIFOs. Each holds an owner file naming
 * the JVM that made it; the first {@link #create} in a base directory removes the dirs of owners that are
 * gone, in case a lifeline watcher could not (it was killed too, or the host rebooted).
 */
public final class WorkDir {
    private static final Logger LOG = LoggerFactory.getLogger(WorkDir.class);
    static final String OWNER_FILE = ".kiln-owner";
    private static final Set<Path> SWEPT = ConcurrentHashMap.newKeySet();

    private WorkDir() {}

    public static Path create(Path base, String prefix) {
        try {
            Files.createDirectories(base);
            if (SWEPT.add(base.toAbsolutePath().normalize())) sweep(base);
            Path dir = Files.createTempDirectory(base, prefix,
                    PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
            Files.writeString(dir.resolve(OWNER_FILE), owner(ProcessHandle.current()));
            return dir;
        } catch (IOException e) {
            throw new KilnException("cannot create a work directory under " + base + ": " + e.getMessage(), e);
        }
    }

    /**
     * "pid start-millis pid-namespace": a pid alone could have been reused since, and a pid means nothing in
     * another pid namespace (a container sharing this temp dir).
     */
    static String owner(ProcessHandle p) {
        return p.pid() + " " + p.info().startInstant().map(Instant::toEpochMilli).orElse(0L) + " " + PID_NAMESPACE;
    }

    private static final String PID_NAMESPACE = pidNamespace();

    private static String pidNamespace() {
        try {
            return Files.readSymbolicLink(Path.of("/proc/self/ns/pid")).toString().replace(' ', '_');
        } catch (IOException | UnsupportedOperationException e) {
            return "unknown";
        }
    }

    /**
     * True when the owner named in an owner file is certainly gone: same pid namespace, and no process with
     * that pid, or one that started at another time. Start times are compared within 2 s: the JDK derives them
     * from the boot time, which moves a little when the clock is stepped.
     */
    static boolean ownerGone(String owner) {
        String[] f = owner.split(" ");
        if (f.length != 3 || !f[2].equals(PID_NAMESPACE)) return false;
        long pid = Long.parseLong(f[0]), started = Long.parseLong(f[1]);
        return ProcessHandle.of(pid).map(p -> p.info().startInstant()
                .map(i -> Math.abs(i.toEpochMilli() - started) > 2000).orElse(false)).orElse(true);
    }

    /** Removes Kiln work dirs under {@code base} whose owning JVM no longer runs; returns how many. */
    public static int sweep(Path base) {
        int removed = 0;
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(base, "kiln-*")) {
            for (Path dir : dirs) {
                Path ownerFile = dir.resolve(OWNER_FILE);
                String owner;
                try {
                    owner = Files.readString(ownerFile).strip();
                } catch (IOException e) {
                    continue; // not ours, or being created right now
                }
                boolean gone;
                try {
                    gone = ownerGone(owner);
                } catch (RuntimeException e) {
                    continue; // an owner file we cannot read: leave the dir alone
                }
                if (gone) {
                    try {
                        delete(dir);
                        removed++;
                        LOG.info("removed {}, left behind by a JVM that is gone ({})", dir, owner);
                    } catch (KilnException e) {
                        LOG.warn("cannot remove stale work dir {}: {}", dir, e.getMessage());
                    }
                }
            }
        } catch (IOException e) {
            LOG.warn("cannot look for stale work dirs in {}: {}", base, e.getMessage());
        }
        return removed;
    }

    /** Removes a tree; files that vanish meanwhile (another cleaner) are fine. */
    public static void delete(Path dir) {
        if (dir == null || !Files.exists(dir)) return;
        try {
            Files.walkFileTree(dir, new SimpleFileVisitor<>() {
                @Override
                public FileVisitResult visitFile(Path file, BasicFileAttributes attrs) throws IOException {
                    Files.deleteIfExists(file);
                    return FileVisitResult.CONTINUE;
                }

                @Override
                public FileVisitResult visitFileFailed(Path file, IOException e) throws IOException {
                    if (e instanceof NoSuchFileException) return FileVisitResult.CONTINUE;
                    throw e;
                }

                @Override
                public FileVisitResult postVisitDirectory(Path d, IOException e) throws IOException {
                    Files.deleteIfExists(d);
                    return FileVisitResult.CONTINUE;
                }
            });
        } catch (NoSuchFileException ignored) {
            // already gone
        } catch (IOException e) {
            throw new KilnException("cannot remove work directory " + dir + ": " + e.getMessage(), e);
        }
    }
}
