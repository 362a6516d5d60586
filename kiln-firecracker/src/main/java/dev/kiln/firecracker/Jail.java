package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.support.WorkDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.FileSystemException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * The chroot of one jailed microVM: {@code <chrootBaseDir>/<exec file name>/<id>/root}. Resources go in as
 * hard links when Firecracker's user may already use the file (a link shares owner and mode with the
 * original, so Kiln never changes a user's file), otherwise as copies owned by that user. Firecracker is
 * given their jailed paths ({@code /name}).
 */
public final class Jail {
    private static final Logger LOG = LoggerFactory.getLogger(Jail.class);
    private final Jailer jailer;
    private final String id;
    private final Path execFile;
    private final Path jailDir;
    private final Path root;
    private final List<Path> cgroupDirs = new ArrayList<>();

    Jail(Jailer jailer, String id, Path execFile) {
        this.jailer = jailer;
        this.id = Jailer.requireJailId(id);
        this.execFile = execFile;
        this.jailDir = jailer.chrootBaseDir().resolve(execFile.getFileName().toString()).resolve(id);
        this.root = jailDir.resolve("root");
    }

    /** Creates the (empty) chroot, so that FIFOs and resources can go in before the jailer runs. */
    void create() {
        if (Files.exists(jailDir)) {
            if (inUse()) {
                throw new KilnException("jail " + jailDir + " already exists and a process runs in it: another microVM"
                        + " with id '" + id + "' runs; give this one another id");
            }
            LOG.info("removing {}, left behind by a microVM that is gone", jailDir);
            WorkDir.delete(jailDir);
        }
        try {
            Files.createDirectories(root);
        } catch (IOException e) {
            throw new KilnException("cannot create jail " + root + ": " + e.getMessage(), e);
        }
    }

    /**
     * Whether a live Firecracker runs in this jail: a process whose arguments hold this jail's id (the jailer passes
     * {@code --id} on). Its root cannot tell: the jailer pivots into the jail in a mount namespace of its own.
     */
    private boolean inUse() {
        try (DirectoryStream<Path> procs = Files.newDirectoryStream(Path.of("/proc"), p -> p.getFileName().toString().matches("\\d+"))) {
            for (Path p : procs) {
                try {
                    if (runsHere(Files.readAllBytes(p.resolve("cmdline")))) return true;
                } catch (IOException ignored) {
                    // gone meanwhile, or not ours to read
                }
            }
            return false;
        } catch (IOException e) {
            return true; // cannot tell: do not remove what may be in use
        }
    }

    /** Whether process {@code pid} is Firecracker (or the jailer) of this jail. */
    boolean runsHere(long pid) {
        // While the jailer's child execs Firecracker its command line reads empty for a moment: read it again then.
        long deadline = System.nanoTime() + CMDLINE_WAIT.toNanos();
        while (true) {
            byte[] cmdline;
            try {
                cmdline = Files.readAllBytes(Path.of("/proc", Long.toString(pid), "cmdline"));
            } catch (IOException e) {
                return false; // gone
            }
            if (cmdline.length > 0) return runsHere(cmdline);
            if (System.nanoTime() - deadline >= 0) return false;
            try {
                Thread.sleep(1);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return false;
            }
        }
    }

    /** How long a command line may read empty (an exec under way) before the process counts as not this jail's. */
    private static final java.time.Duration CMDLINE_WAIT = java.time.Duration.ofSeconds(2);

    /**
     * A command line (NUL-separated) of this jail's Firecracker ({@code /<exec file> --id <id> …}), or of the jailer
     * about to become it (a child the jailer forked into a new pid namespace is the jailer until it execs Firecracker).
     */
    private boolean runsHere(byte[] cmdline) {
        List<String> argv = List.of(new String(cmdline, java.nio.charset.StandardCharsets.UTF_8).split("\0"));
        String exec = execFile.getFileName().toString();
        boolean firecracker = !argv.isEmpty() && argv.getFirst().endsWith(exec);
        int e = argv.indexOf("--exec-file");
        boolean jailer = e >= 0 && e + 1 < argv.size() && argv.get(e + 1).endsWith(exec);
        int i = argv.indexOf("--id");
        return (firecracker || jailer) && i >= 0 && i + 1 < argv.size() && argv.get(i + 1).equals(id);
    }

    public Path root() { return root; }

    /** {@code <chrootBaseDir>/<exec file name>/<id>}: removed whole on cleanup. */
    public Path jailDir() { return jailDir; }

    /** The host path of a path inside the jail, e.g. {@code /run/firecracker.socket}. */
    public Path hostPath(String jailedPath) {
        String rel = jailedPath.startsWith("/") ? jailedPath.substring(1) : jailedPath;
        Path p = root.resolve(rel).normalize();
        if (!p.startsWith(root)) throw new IllegalArgumentException(jailedPath + " leaves the jail");
        return p;
    }

    /** Where the jailer writes Firecracker's host pid: {@code <root>/<exec file name>.pid}. */
    public Path pidFile() {
        return root.resolve(execFile.getFileName() + ".pid");
    }

    /**
     * Puts {@code hostFile} into the jail and returns its jailed path ({@code /name}). {@code writable}:
     * whether Firecracker must write it (a read-write drive, a snapshot it creates).
     */
    public String put(Path hostFile, boolean writable) {
        return put(hostFile, hostFile.getFileName().toString(), writable, false);
    }

    /**
     * {@link #put(Path, boolean)} under {@code name} in the jail's root: for a file Firecracker must find under the
     * same name in every jail (a drive, whose path a snapshot records), whatever the host file is called.
     */
    public String put(Path hostFile, String name, boolean writable) {
        return put(hostFile, name, writable, false);
    }

    /**
     * {@link #put(Path, boolean)} for a file whose writes must reach the host file itself (a drive the user keeps):
     * refuses, saying why, where {@code put} would copy it.
     */
    public String putShared(Path hostFile, boolean writable) {
        return put(hostFile, hostFile.getFileName().toString(), writable, true);
    }

    /**
     * {@link #put(Path, String, boolean)} for a file whose writes must reach the host file itself (a drive the user
     * keeps): refuses, saying why, where {@code put} would copy it.
     */
    public String putShared(Path hostFile, String name, boolean writable) {
        return put(hostFile, name, writable, true);
    }

    private String put(Path hostFile, String name, boolean writable, boolean shared) {
        if (name.isEmpty() || name.contains("/") || name.equals(".") || name.equals("..")) {
            throw new IllegalArgumentException("a file in the jail's root needs a plain name, got '" + name + "'");
        }
        Path target = root.resolve(name);
        if (Files.exists(target, LinkOption.NOFOLLOW_LINKS)) {
            try {
                if (Files.isSameFile(target, hostFile)) return "/" + name;
            } catch (IOException ignored) {
                // fall through to the clear error
            }
            throw new KilnException("jail " + root + " already has a different file named " + name + "; rename " + hostFile);
        }
        try {
            if (!usableAsIs(hostFile, writable) || !tryLink(target, hostFile)) {
                if (shared) {
                    throw new KilnException("the jailed Firecracker (uid " + jailer.uid() + ") could only get a copy of "
                            + hostFile + ", and what the guest writes would not reach it: make the file "
                            + (writable ? "writable" : "readable") + " by uid " + jailer.uid()
                            + " and keep it on the jail's file system (" + root + "), or let Kiln keep the overlay");
                }
                Files.copy(hostFile, target, StandardCopyOption.COPY_ATTRIBUTES);
                handOver(target);
            }
            return "/" + name;
        } catch (IOException e) {
            throw new KilnException("cannot put " + hostFile + " into jail " + root + ": " + e.getMessage(), e);
        }
    }

    /** Makes a file Kiln created in the jail (a FIFO, the config file) Firecracker's. */
    void handOver(Path inJail) {
        try {
            Files.setAttribute(inJail, "unix:uid", jailer.uid(), LinkOption.NOFOLLOW_LINKS);
            Files.setAttribute(inJail, "unix:gid", jailer.gid(), LinkOption.NOFOLLOW_LINKS);
        } catch (IOException e) {
            throw new KilnException("cannot hand " + inJail + " to uid " + jailer.uid() + " (the jailer needs root): " + e.getMessage(), e);
        }
    }

    /** Whether Firecracker's user can use the file through a link, without a change of owner or mode. */
    private boolean usableAsIs(Path file, boolean writable) throws IOException {
        int owner = (Integer) Files.getAttribute(file, "unix:uid");
        int group = (Integer) Files.getAttribute(file, "unix:gid");
        Set<PosixFilePermission> perms = Files.getPosixFilePermissions(file);
        if (owner == jailer.uid()) return perms.contains(PosixFilePermission.OWNER_READ)
                && (!writable || perms.contains(PosixFilePermission.OWNER_WRITE));
        if (group == jailer.gid()) return perms.contains(PosixFilePermission.GROUP_READ)
                && (!writable || perms.contains(PosixFilePermission.GROUP_WRITE));
        return perms.contains(PosixFilePermission.OTHERS_READ) && (!writable || perms.contains(PosixFilePermission.OTHERS_WRITE));
    }

    private static boolean tryLink(Path link, Path existing) throws IOException {
        try {
            Files.createLink(link, existing);
            return true;
        } catch (FileSystemException e) {
            return false; // another file system (EXDEV) or links not allowed: copy instead
        }
    }

    /** Remembers the cgroup directories the jailer will create, to remove them after. */
    void noteCgroups() {
        if (jailer.cgroups().isEmpty()) return;
        String parent = jailer.parentCgroup() != null ? jailer.parentCgroup() : execFile.getFileName().toString();
        Path base = Path.of("/sys/fs/cgroup");
        int version = jailer.cgroupVersion() != null ? jailer.cgroupVersion() : 1;
        if (version == 2) {
            cgroupDirs.add(base.resolve(parent).resolve(id));
        } else {
            for (String c : jailer.cgroups()) {
                String controller = c.substring(0, c.indexOf('.'));
                Path dir = base.resolve(controller).resolve(parent).resolve(id);
                if (!cgroupDirs.contains(dir)) cgroupDirs.add(dir);
            }
        }
    }

    /**
     * Shell commands for the lifeline, run if the JVM dies: kill Firecracker by the pid in the jail's pid file (only
     * if that process's arguments still name this jail's id, so a reused pid is never hit), wait for it, then remove the jail, the
     * microVM's cgroups and the per-exec directory once empty. Without this, a new microVM with the same id could not
     * start ("already exists").
     */
    String onJvmDeathScript() {
        StringBuilder cgroups = new StringBuilder();
        for (Path dir : cgroupDirs) cgroups.append(' ').append(quote(dir.toString()));
        StringBuilder parents = new StringBuilder();
        if (jailer.parentCgroup() == null) for (Path dir : cgroupDirs) parents.append(' ').append(quote(dir.getParent().toString()));
        // A pid from the pid file (written without a newline) is Firecracker's only while its arguments still hold
        // this jail's id.
        return """
                ours() { tr '\\0' '\\n' < "/proc/$1/cmdline" 2>/dev/null | grep -qxF -- %2$s; }
                fc=$(cat %1$s 2>/dev/null)
                if [ -n "$fc" ] && ours "$fc"; then
                  kill -KILL "$fc"
                  for _ in $(seq 200); do ours "$fc" || break; sleep 0.05; done
                fi
                rm -rf -- %3$s
                for _ in $(seq 200); do rmdir%4$s 2>/dev/null; gone=1; for d in%4$s; do [ -e "$d" ] && gone=; done; [ -n "$gone" ] && break; sleep 0.05; done
                rmdir%5$s %6$s 2>/dev/null
                """.formatted(quote(pidFile().toString()), quote(id), quote(jailDir.toString()), cgroups,
                parents, quote(jailDir.getParent().toString()));
    }

    private static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }

    /** Removes the jail and the microVM's cgroups; call once Firecracker is gone. */
    void cleanup(Duration cgroupTimeout) {
        WorkDir.delete(jailDir);
        try {
            Files.deleteIfExists(jailDir.getParent()); // <base>/<exec file name>, once no other microVM uses it
        } catch (IOException ignored) {
            // not empty: another microVM's jail is in it
        }
        for (Path dir : cgroupDirs) removeCgroup(dir, cgroupTimeout, jailer.parentCgroup() == null);
    }

    private static void removeCgroup(Path dir, Duration timeout, boolean removeParent) {
        // A cgroup can only be removed once its last process has been reaped by the kernel; that can lag a little.
        long deadline = System.nanoTime() + timeout.toNanos();
        while (Files.exists(dir)) {
            try {
                Files.delete(dir);
            } catch (IOException e) {
                if (System.nanoTime() - deadline > 0) {
                    throw new KilnException("cannot remove cgroup " + dir + ": " + e.getMessage(), e);
                }
                try {
                    Thread.sleep(20);
                } catch (InterruptedException ie) {
                    Thread.currentThread().interrupt();
                    return;
                }
            }
        }
        if (!removeParent) return; // a parent cgroup the user named is theirs
        try {
            Files.deleteIfExists(dir.getParent()); // the per-exec parent the jailer made, once no other microVM uses it
        } catch (IOException ignored) {
            // not empty: another microVM's cgroup is in it
        }
    }

    @Override
    public String toString() {
        return "Jail[" + root + "]";
    }
}
