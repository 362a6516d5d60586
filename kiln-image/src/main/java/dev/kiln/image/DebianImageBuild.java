package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import dev.kiln.support.KilnCache;
import org.apache.commons.compress.archivers.tar.TarArchiveEntry;
import org.apache.commons.compress.archivers.tar.TarArchiveOutputStream;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/** One build of a Debian image, run while holding the Debian cache's lock. */
final class DebianImageBuild {
    static final String MANIFEST = "image.properties";
    private static final String DISK = "rootfs.ext4", BOOTABLE_DISK = "disk.raw";
    private static final Duration BOOTSTRAP_TIMEOUT = Duration.ofMinutes(30), DISK_TIMEOUT = Duration.ofMinutes(10);
    private static final Pattern UNKNOWN_PACKAGE = Pattern.compile("Unable to locate package (\\S+)|Package '?(\\S+?)'? has no installation candidate");

    private final DebianImage.Recipe recipe;
    /** The default image whose kernel and initramfs boot this one; null for a bootable disk. */
    private final GuestImage base;
    private final Path cacheDir, imageDir;
    private final Consumer<String> progress;

    DebianImageBuild(DebianImage.Recipe recipe, GuestImage base, Path cacheDir, Path imageDir, Consumer<String> progress) {
        this.recipe = recipe;
        this.base = base;
        this.cacheDir = cacheDir;
        this.imageDir = imageDir;
        this.progress = progress;
    }

    void run() throws IOException {
        long start = System.nanoTime();
        requireTools();
        removeLeftovers();
        Path work = Files.createTempDirectory(cacheDir, ".build-");
        try {
            String release = base == null ? null : base.kernel().getFileName().toString().replaceFirst("^vmlinuz-", "");
            Path modules = base == null ? null : kernelModules(release, work.resolve("kernel"));
            Path hooks = Files.createDirectories(work.resolve("kiln"));
            for (String name : recipe.resources()) {
                Files.createDirectories(hooks.resolve(name).getParent());
                Files.write(hooks.resolve(name), DebianImage.resource(name));
            }

            Path root = work.resolve("root");
            progress.accept("bootstrapping " + recipe.describe() + " (mmdebstrap, from Debian's packages)…");
            long t0 = System.nanoTime();
            bootstrap(root, hooks, modules);
            long usedKib = usedKib(root);
            progress.accept("root file system ready in " + DefaultImage.since(t0) + ": " + Text.bytes(usedKib * 1024));

            BootableDisk bootable = recipe.bootable() ? new BootableDisk(root, imageDir.getFileName().toString()) : null;
            long otherMib = bootable == null ? 0 : bootable.overheadMib();
            long rootMib = rootSizeMib(usedKib, otherMib);
            Path out = Files.createTempDirectory(cacheDir, ".new-");
            try {
                progress.accept("making the ext4 file system (" + rootMib + " MiB, sparse; mke2fs -d, no mounts)…");
                if (bootable == null) {
                    makeDisk(root, out.resolve(DISK), rootMib, usedKib);
                    Files.copy(base.kernel(), out.resolve(base.kernel().getFileName()));
                    Files.copy(base.initrd(), out.resolve(base.initrd().getFileName()));
                    writeManifest(out, Map.of("kernel", base.kernel().getFileName().toString(), "initrd",
                            base.initrd().getFileName().toString(), "cmdline", DebianImage.CMDLINE, "readyMarker",
                            DefaultImage.READY_MARKER), release, DISK, rootMib, usedKib);
                } else {
                    makeDisk(root, work.resolve(DISK), rootMib, usedKib);
                    progress.accept("making the bootable disk (GPT, EFI system partition with systemd-boot and SYSLINUX, "
                            + Text.bytes((rootMib + otherMib) << 20) + ", sparse)…");
                    bootable.write(work.resolve(DISK), rootMib, work, out.resolve(BOOTABLE_DISK));
                    writeManifest(out, Map.of("bootable", "true", "kernelCmdline", bootable.kernelCommandLine()),
                            bootable.kernelRelease, BOOTABLE_DISK, rootMib + otherMib, usedKib);
                }
                DefaultImage.deleteTree(imageDir); // a forced rebuild of the same inputs
                Files.move(out, imageDir, StandardCopyOption.ATOMIC_MOVE);
            } finally {
                DefaultImage.deleteTree(out);
            }
            progress.accept("done in " + DefaultImage.since(start) + " → " + imageDir + "/");
        } finally {
            removeTree(work);
        }
    }

    private void requireTools() {
        if (!"root".equals(System.getProperty("user.name"))) {
            throw new KilnException("Debian images are built as root (mmdebstrap --mode=root gets owners and device files"
                    + " right); run this as root");
        }
        List<List<String>> tools = new ArrayList<>(List.of(List.of("mmdebstrap", "mmdebstrap"), List.of("mke2fs", "e2fsprogs"),
                List.of("dpkg-deb", "dpkg")));
        if (recipe.bootable()) tools.addAll(BootableDisk.TOOLS);
        for (List<String> tool : tools) {
            if (Executables.find(tool.get(0)).isEmpty()) {
                throw new KilnException(tool.get(0) + " is not on PATH; Debian images need it (apt-get install " + tool.get(1) + ")");
            }
        }
        if (recipe.bootable() && !Files.isRegularFile(BootableDisk.GPT_MBR)) {
            throw new KilnException(BootableDisk.GPT_MBR + " is missing; bootable Debian images need it (apt-get install syslinux-common)");
        }
    }

    /** The modules of the default image's kernel, unpacked from its package (downloaded if the cache lost it). */
    private Path kernelModules(String release, Path into) {
        Path debs = KilnCache.root().resolve("debs");
        Path deb;
        try (Stream<Path> files = Files.exists(debs) ? Files.list(debs) : Stream.empty()) {
            deb = files.filter(p -> p.getFileName().toString().startsWith("linux-image-" + release + "_")).findFirst().orElse(null);
        } catch (IOException e) {
            throw new KilnException("cannot read " + debs + ": " + e.getMessage(), e);
        }
        if (deb == null) {
            List<Apt.Package> pkg = Apt.locate(List.of("linux-image-" + release));
            progress.accept("downloading the kernel's package for its modules (apt-get download)…");
            try {
                Files.createDirectories(debs);
            } catch (IOException e) {
                throw new KilnException("cannot make " + debs + ": " + e.getMessage(), e);
            }
            Apt.download(pkg, debs);
            deb = debs.resolve(pkg.getFirst().fileName());
        }
        String name = deb.getFileName().toString();
        progress.accept("unpacking the kernel's modules (" + name + ")…");
        Apt.unpack(deb, into);
        Path modules = Stream.of("lib/modules", "usr/lib/modules").map(into::resolve).filter(Files::isDirectory).findFirst()
                .orElseThrow(() -> new KilnException(name + " ships no /lib/modules"));
        if (!Files.isDirectory(modules.resolve(release))) throw new KilnException(name + " ships no modules for " + release);
        return modules;
    }

    /**
     * mmdebstrap, then Kiln's changes: customize.sh with the default kernel's modules, or for a bootable disk the
     * initramfs settings first and bootable.sh with the root partition's UUID last.
     */
    private void bootstrap(Path root, Path hooks, Path modules) {
        List<String> cmd = new ArrayList<>(List.of("mmdebstrap", "--mode=root", "--format=directory", "--variant=minbase",
                "--include=" + String.join(",", recipe.allPackages())));
        if (modules != null) {
            cmd.add("--customize-hook=sh " + quote(hooks.resolve("customize.sh").toString()) + " \"$1\" " + quote(modules.toString()));
            if (!recipe.agent()) cmd.add("--customize-hook=chroot \"$1\" systemctl disable --quiet kiln-agent-vsock.service"
                    + " && rm \"$1/etc/systemd/system/kiln-agent-vsock.service\"");
        } else {
            cmd.add("--setup-hook=sh " + quote(hooks.resolve("initramfs.sh").toString()) + " \"$1\"");
            cmd.add("--customize-hook=sh " + quote(hooks.resolve("bootable.sh").toString()) + " \"$1\" "
                    + BootableDisk.rootPartitionId(imageDir.getFileName().toString()));
        }
        // Unpacked by tar inside the chroot, so that symlinks on the way resolve within the image, never on the host.
        if (!recipe.files().isEmpty()) cmd.add("--customize-hook=tar-in " + filesTarball(hooks.resolve("files.tar")) + " /");
        for (String c : recipe.commands()) cmd.add("--customize-hook=chroot \"$1\" /bin/sh -c " + quote(c));
        cmd.add(recipe.release());
        cmd.add(root.toString());
        if (recipe.mirror() != null) cmd.add(recipe.mirror());
        HostCommand.Result r = HostCommand.run(cmd, null, BOOTSTRAP_TIMEOUT, "mmdebstrap", line -> {
            if (line.startsWith("I: ") || line.startsWith("W: ")) progress.accept("  " + line);
        });
        if (r.ok()) return;
        String out = r.stdout() + r.stderr();
        Matcher m = UNKNOWN_PACKAGE.matcher(out);
        if (m.find()) {
            String name = m.group(1) != null ? m.group(1) : m.group(2);
            throw new KilnException("Debian image: " + recipe.release() + " has no package " + name + "; apt says: "
                    + m.group() + "\n" + Text.tail(out.strip(), 2000));
        }
        throw new KilnException("Debian image: mmdebstrap failed (exit " + r.exitCode() + "):\n" + Text.tail(out.strip(), 4000));
    }

    /**
     * The files to copy in as a tarball of paths relative to the image's root, owned by root, with the sources'
     * modes; a directory brings its whole tree.
     */
    private Path filesTarball(Path tarball) {
        try (TarArchiveOutputStream tar = new TarArchiveOutputStream(Files.newOutputStream(tarball))) {
            tar.setLongFileMode(TarArchiveOutputStream.LONGFILE_POSIX);
            for (DebianImage.FileCopy f : recipe.files()) {
                try (Stream<Path> tree = Files.walk(f.source())) {
                    for (Path p : tree.sorted().toList()) {
                        String rel = f.source().relativize(p).toString();
                        String name = (f.guestPath().substring(1) + (rel.isEmpty() ? "" : "/" + rel));
                        TarArchiveEntry e;
                        if (Files.isSymbolicLink(p)) {
                            e = new TarArchiveEntry(name, TarArchiveEntry.LF_SYMLINK);
                            e.setLinkName(Files.readSymbolicLink(p).toString());
                        } else {
                            e = new TarArchiveEntry(Files.isDirectory(p) ? name + "/" : name);
                            e.setMode((Files.isDirectory(p) ? 040000 : 0100000) | ImageBuilder.mode(p));
                            if (Files.isRegularFile(p)) e.setSize(Files.size(p));
                        }
                        e.setIds(0, 0);
                        e.setModTime(Files.getLastModifiedTime(p, LinkOption.NOFOLLOW_LINKS));
                        tar.putArchiveEntry(e);
                        if (Files.isRegularFile(p, LinkOption.NOFOLLOW_LINKS)) Files.copy(p, tar);
                        tar.closeArchiveEntry();
                    }
                }
            }
        } catch (IOException e) {
            throw new KilnException("Debian image: cannot pack the files to copy in: " + e.getMessage(), e);
        }
        return tarball;
    }

    /**
     * The root file system's size: the disk asked for less the {@code otherMib} it holds besides (refused when the files
     * cannot fit), else the files plus half again and 256 MiB.
     */
    private long rootSizeMib(long usedKib, long otherMib) {
        // ext4's own metadata (inode tables, journal) takes ~5 % plus the journal's 64 MiB on disks of this size.
        long neededMib = usedKib * 105 / 100 / 1024 + 80;
        if (recipe.sizeMib() > 0) {
            if (recipe.sizeMib() - otherMib < neededMib) {
                throw new KilnException("Debian image: a disk of " + recipe.sizeMib() + " MiB is too small: the root file"
                        + " system holds " + Text.bytes(usedKib * 1024) + " and needs about " + neededMib
                        + " MiB with ext4's own data" + (otherMib == 0 ? "" : ", the boot partition and partition table "
                        + otherMib + " MiB more") + "; ask for " + roundUp(neededMib + neededMib / 4 + otherMib) + " MiB or more");
            }
            return recipe.sizeMib() - otherMib;
        }
        return roundUp(usedKib * 3 / 2 / 1024 + 256);
    }

    private static long roundUp(long mib) {
        return (mib + 63) / 64 * 64;
    }

    private static void makeDisk(Path root, Path disk, long sizeMib, long usedKib) {
        HostCommand.Result r = HostCommand.run(List.of("mke2fs", "-q", "-t", "ext4", "-L", "kiln-root", "-E", "root_owner=0:0",
                "-d", root.toString(), "-F", disk.toString(), sizeMib + "M"), null, DISK_TIMEOUT, "mke2fs");
        if (!r.ok()) {
            String said = r.complaint();
            if (said.contains("Could not allocate") || said.contains("No space left")) {
                throw new KilnException("Debian image: a disk of " + sizeMib + " MiB is too small for the root file system ("
                        + Text.bytes(usedKib * 1024) + "); mke2fs says: " + said);
            }
            throw new KilnException("Debian image: mke2fs failed (exit " + r.exitCode() + "): " + said);
        }
    }

    /** The manifest: how the image boots ({@code boot}: kernel and initrd, or the bootable disk), then what it is. */
    private void writeManifest(Path out, Map<String, String> boot, String kernelRelease, String disk, long sizeMib, long usedKib)
            throws IOException {
        Properties m = new Properties();
        m.putAll(boot);
        m.setProperty("rootDisk", disk);
        if (!recipe.agent()) m.setProperty("agent", "false");
        m.setProperty("description", recipe.describe() + ", kernel " + kernelRelease + ", " + sizeMib + " MiB disk"
                + (recipe.bootable() ? " booted by its firmware (BIOS or UEFI)" : ""));
        m.setProperty("release", recipe.release());
        m.setProperty("packages", String.join(" ", recipe.packages()));
        m.setProperty("diskBytes", Long.toString(sizeMib << 20));
        m.setProperty("usedBytes", Long.toString(usedKib * 1024));
        m.setProperty("built", Instant.now().toString());
        DefaultImage.store(m, out.resolve(MANIFEST));
    }

    /** What the root file system takes on disk (du: blocks, not apparent sizes). */
    private static long usedKib(Path root) {
        HostCommand.Result r = HostCommand.run(List.of("du", "-s", "-k", "-x", root.toString()), null, Duration.ofMinutes(2), "du");
        if (!r.ok()) throw new KilnException("cannot measure " + root + ": " + r.complaint());
        return Long.parseLong(r.stdout().strip().split("\\s+")[0]);
    }

    /** Half-done builds of a killed process; safe to remove because this process holds the lock. */
    private void removeLeftovers() throws IOException {
        try (Stream<Path> entries = Files.list(cacheDir)) {
            for (Path p : entries.toList()) {
                String n = p.getFileName().toString();
                if (n.startsWith(".build-") || n.startsWith(".new-")) removeTree(p);
            }
        }
    }

    /**
     * Removes a build tree without leaving its file system: should mmdebstrap have died with /proc or /dev mounted in
     * the root, those are skipped (and unmounted first), never deleted.
     */
    private static void removeTree(Path dir) {
        for (String mountPoint : mountsUnder(dir)) {
            HostCommand.run(List.of("umount", "--lazy", mountPoint), null, Duration.ofMinutes(1), "umount " + mountPoint);
        }
        HostCommand.Result r = HostCommand.run(List.of("rm", "-rf", "--one-file-system", dir.toString()), null,
                Duration.ofMinutes(10), "rm -rf " + dir);
        if (!r.ok()) throw new KilnException("cannot remove " + dir + ": " + r.complaint());
    }

    /** The mount points at or below {@code dir}, deepest first. */
    private static List<String> mountsUnder(Path dir) {
        List<String> found = new ArrayList<>();
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
                String[] f = line.split(" ");
                if (f.length < 5) continue;
                String point = unescape(f[4]);
                if (Path.of(point).startsWith(dir)) found.add(point);
            }
        } catch (IOException e) {
            throw new KilnException("cannot read /proc/self/mountinfo: " + e.getMessage(), e);
        }
        found.sort(java.util.Comparator.comparingInt(String::length).reversed());
        return found;
    }

    /** mountinfo writes space, tab, newline and backslash as octal escapes. */
    private static String unescape(String s) {
        Matcher m = Pattern.compile("\\\\([0-7]{3})").matcher(s);
        StringBuilder b = new StringBuilder();
        while (m.find()) m.appendReplacement(b, Matcher.quoteReplacement(String.valueOf((char) Integer.parseInt(m.group(1), 8))));
        return m.appendTail(b).toString();
    }

    /** A shell word that the shell reads back as {@code s}. */
    static String quote(String s) {
        return "'" + s.replace("'", "'\\''") + "'";
    }
}
