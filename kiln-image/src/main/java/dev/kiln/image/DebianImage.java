package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.support.KilnCache;

import java.io.IOException;
import java.io.InputStream;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Objects;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.regex.Pattern;

/**
 * A Debian guest with systemd, built offline on this machine from Debian's packages: {@code mmdebstrap} makes the root
 * file system ({@code --variant=minbase} plus systemd, udev, kmod, qemu-guest-agent and the packages asked for), and
 * {@code mke2fs -d} turns it into an ext4 disk without mounting anything. It boots the default image's kernel and
 * initramfs, which mounts the disk ({@code kiln.root=serial:root}) and hands over to systemd. Cached by a hash of
 * every input under {@code <cache>/debian/}.
 *
 * <pre>{@code
 * GuestImage image = DebianImage.builder().packages("nginx-light")
 *         .file(Path.of("site.conf"), "/etc/nginx/sites-enabled/default")
 *         .run("systemctl enable nginx")
 *         .build(System.out::println);
 * }</pre>
 *
 * <p>Inside: systemd; qemu-guest-agent on the virtio-serial port (QEMU) or on vsock (Firecracker,
 * {@code kiln.agent=vsock}); root logged in on the serial console; systemd-networkd with DHCP on the NICs; the kernel's
 * modules with their {@code depmod} index; {@code KILN-READY} on the console once multi-user is reached. Units that
 * only slow a test boot are masked ({@link #MASKED_UNITS}). Building needs root (mmdebstrap's root mode, so that
 * owners and device files are right).
 *
 * <p>{@link Builder#bootable()} makes instead a disk that the firmware boots (SeaBIOS or UEFI) with Debian's own kernel
 * and initramfs: an image as Kiln did not build it, reached over SSH or the console, with
 * {@link Builder#noAgent()} none of Kiln's agent either.
 */
public final class DebianImage {
    /** Bump when the build's output changes for the same inputs. */
    private static final String RECIPE_VERSION = "1";
    /** What every Debian image has besides minbase and the user's packages. */
    static final List<String> BASE_PACKAGES = List.of("systemd-sysv", "udev", "kmod", "qemu-guest-agent", "iproute2");
    /** The resources of an image booted with Kiln's kernel and initramfs. */
    private static final List<String> RESOURCES = List.of("customize.sh", "kiln-ready.service", "kiln-agent-vsock.service",
            "20-kiln-dhcp.network", "autologin.conf", "masked-units");
    /** The units masked in every image because they only slow a test boot. */
    public static final List<String> MASKED_UNITS = resourceText("masked-units").lines().filter(l -> !l.isBlank()).toList();
    static final String CMDLINE = DefaultImage.CMDLINE + " kiln.root=serial:" + GuestImage.ROOT_DRIVE;
    private static final Pattern PACKAGE = Pattern.compile("[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?");
    private static final Pattern RELEASE = Pattern.compile("[a-z][a-z0-9-]*");
    private static final ReentrantLock BUILDING = new ReentrantLock();

    private DebianImage() {}

    public static Builder builder() {
        return new Builder();
    }

    /** A file of the host copied into the image at build time. */
    public record FileCopy(Path source, String guestPath) {
        public FileCopy {
            Objects.requireNonNull(source, "source");
            if (guestPath == null || !guestPath.startsWith("/") || guestPath.contains("/../") || guestPath.endsWith("/..")) {
                throw new IllegalArgumentException("a file's place in the image must be an absolute path, got '" + guestPath + "'");
            }
            source = source.toAbsolutePath().normalize();
        }
    }

    /** What to build: the release, packages, files, build-time commands and the disk's size. */
    public static final class Builder {
        private String release = "bookworm";
        private final List<String> packages = new ArrayList<>();
        private final List<FileCopy> files = new ArrayList<>();
        private final List<String> commands = new ArrayList<>();
        private long sizeMib;
        private String mirror;
        private boolean agent = true, bootable;

        private Builder() {}

        /** The Debian release (default bookworm, the host's). */
        public Builder release(String release) {
            if (release == null || !RELEASE.matcher(release).matches()) {
                throw new IllegalArgumentException("release must be a Debian suite or codename like bookworm, got '" + release + "'");
            }
            this.release = release;
            return this;
        }

        /** Packages to install, by name (or {@code name=version}), with what they depend on. */
        public Builder packages(String... names) {
            return packages(List.of(names));
        }

        public Builder packages(List<String> names) {
            for (String n : names) {
                if (n == null || !PACKAGE.matcher(n).matches()) {
                    throw new IllegalArgumentException("packages: '" + n + "' is not a Debian package name");
                }
                packages.add(n);
            }
            return this;
        }

        /** Copies a host file or directory into the image at {@code guestPath} (after the packages are installed). */
        public Builder file(Path source, String guestPath) {
            files.add(new FileCopy(source, guestPath));
            return this;
        }

        /** Runs a shell command in the image at build time (chrooted, after the files are copied), in order. */
        public Builder run(String shellCommand) {
            if (shellCommand == null || shellCommand.isBlank()) throw new IllegalArgumentException("run: the command is empty");
            commands.add(shellCommand);
            return this;
        }

        /** The disk's size in MiB; default: what the files need, plus half again and 256 MiB. */
        public Builder sizeMib(long mib) {
            if (mib < 64) throw new IllegalArgumentException("sizeMib: a Debian image needs more than " + mib + " MiB");
            this.sizeMib = mib;
            return this;
        }

        /** The disk's size as {@code kiln image build} takes it: {@code 2G}, {@code 1500M}. */
        public Builder size(String size) {
            var m = Pattern.compile("(?i)(\\d+)\\s*([mg])i?b?").matcher(size == null ? "" : size.strip());
            if (!m.matches()) throw new IllegalArgumentException("size must look like 2G or 1500M, got '" + size + "'");
            long n = Long.parseLong(m.group(1));
            return sizeMib(m.group(2).equalsIgnoreCase("g") ? n * 1024 : n);
        }

        /** The Debian mirror (default: mmdebstrap's, deb.debian.org). */
        public Builder mirror(String url) {
            this.mirror = Objects.requireNonNull(url, "mirror");
            return this;
        }

        /** No qemu-guest-agent in the image, nor Kiln's units for it: the image is reached some other way (SSH, the console). */
        public Builder noAgent() {
            this.agent = false;
            return this;
        }

        /**
         * The image is a single raw GPT disk that boots on its own under BIOS (SeaBIOS) and UEFI (OVMF) firmware, with
         * Debian's generic kernel (which has 9p and virtiofs) and its initramfs; see {@link GuestImage#bootableDisk}.
         * Root is logged in on the serial console ttyS0, where the kernel and systemd print. The disk's size
         * ({@link #sizeMib(long)}) includes its EFI system partition.
         */
        public Builder bootable() {
            this.bootable = true;
            return this;
        }

        /** The image: the cached one for these inputs, else built now. */
        public GuestImage build(Consumer<String> progress) {
            return build(false, progress);
        }

        /** Builds the image; {@code force} rebuilds even when one for these inputs is cached. */
        public GuestImage build(boolean force, Consumer<String> progress) {
            Recipe recipe = new Recipe(release, List.copyOf(packages), List.copyOf(files), List.copyOf(commands), sizeMib, mirror,
                    agent, bootable);
            return DebianImage.build(recipe, force, progress);
        }
    }

    /** Everything a build depends on besides the default image (which a bootable image does without). */
    record Recipe(String release, List<String> packages, List<FileCopy> files, List<String> commands, long sizeMib, String mirror,
                  boolean agent, boolean bootable) {
        /** All packages mmdebstrap installs besides minbase, sorted and without repeats. */
        List<String> allPackages() {
            TreeSet<String> all = new TreeSet<>(BASE_PACKAGES);
            if (!agent) all.remove("qemu-guest-agent");
            if (bootable) all.addAll(BootableDisk.PACKAGES);
            all.addAll(packages);
            return List.copyOf(all);
        }

        /** The build's own files, written next to each other for the customize hook. */
        List<String> resources() {
            return bootable ? BootableDisk.RESOURCES : RESOURCES;
        }

        String describe() {
            return "Debian " + release + " with systemd" + (packages.isEmpty() ? "" : ", " + String.join(", ", packages))
                    + (agent ? "" : ", no guest agent");
        }
    }

    /** Where Debian images are cached. */
    public static Path cacheDir() {
        return KilnCache.root().resolve("debian");
    }

    private static GuestImage build(Recipe recipe, boolean force, Consumer<String> progress) {
        for (FileCopy f : recipe.files()) {
            if (!Files.exists(f.source())) throw new KilnException("Debian image: the file to copy in does not exist: " + f.source());
        }
        GuestImage base = recipe.bootable() ? null : DefaultImage.get(progress);
        Consumer<String> own = line -> progress.accept("kiln image: " + line);
        Path dir = cacheDir();
        BUILDING.lock();
        try {
            Files.createDirectories(dir);
            try (FileChannel lockFile = FileChannel.open(dir.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                 FileLock ignored = lockFile.lock()) {
                String hash = hash(recipe, base);
                Path imageDir = dir.resolve(hash);
                if (!force && Files.isRegularFile(imageDir.resolve(DebianImageBuild.MANIFEST))) {
                    own.accept("up to date → " + imageDir + "/");
                    return fromManifest(imageDir);
                }
                new DebianImageBuild(recipe, base, dir, imageDir, own).run();
                return fromManifest(imageDir);
            }
        } catch (IOException e) {
            throw new KilnException("cannot build the Debian image in " + dir + ": " + e.getMessage(), e);
        } finally {
            BUILDING.unlock();
        }
    }

    static GuestImage fromManifest(Path imageDir) throws IOException {
        Properties m = DefaultImage.load(imageDir.resolve(DebianImageBuild.MANIFEST));
        boolean agent = Boolean.parseBoolean(m.getProperty("agent", "true"));
        Path disk = imageDir.resolve(m.getProperty("rootDisk"));
        if (Boolean.parseBoolean(m.getProperty("bootable"))) {
            return GuestImage.bootableDisk(disk, m.getProperty("description")).withAgent(agent);
        }
        return new GuestImage(imageDir.resolve(m.getProperty("kernel")), imageDir.resolve(m.getProperty("initrd")),
                m.getProperty("cmdline"), m.getProperty("readyMarker"), agent, m.getProperty("description"), disk);
    }

    /** Every Debian image in the cache, newest first, as {@code kiln image list} shows them. */
    public static List<Cached> list() {
        List<Cached> out = new ArrayList<>();
        try (var entries = Files.list(cacheDir())) {
            for (Path p : entries.filter(Files::isDirectory).filter(p -> !p.getFileName().toString().startsWith(".")).toList()) {
                Path manifest = p.resolve(DebianImageBuild.MANIFEST);
                if (!Files.isRegularFile(manifest)) continue;
                Properties m = DefaultImage.load(manifest);
                out.add(new Cached(p.getFileName().toString(), p, m.getProperty("description"), m.getProperty("built"),
                        Long.parseLong(m.getProperty("diskBytes", "0")), Long.parseLong(m.getProperty("usedBytes", "0"))));
            }
        } catch (java.nio.file.NoSuchFileException none) {
            return List.of();
        } catch (IOException e) {
            throw new KilnException("cannot list " + cacheDir() + ": " + e.getMessage(), e);
        }
        out.sort((a, b) -> b.built().compareTo(a.built()));
        return out;
    }

    /** A cached image: its hash (the directory's name), what it holds, when it was built, its disk's size and use. */
    public record Cached(String hash, Path dir, String description, String built, long diskBytes, long usedBytes) {}

    /** Removes a cached image by its hash (or a unique prefix of it); returns the directory removed. */
    public static Path remove(String hashPrefix) {
        List<Cached> matches = list().stream().filter(c -> c.hash().startsWith(hashPrefix)).toList();
        if (hashPrefix.isBlank() || matches.isEmpty()) throw new KilnException("no cached Debian image matches '" + hashPrefix + "'");
        if (matches.size() > 1) throw new KilnException("'" + hashPrefix + "' matches " + matches.size() + " images; give more of the hash");
        DefaultImage.deleteTree(matches.getFirst().dir());
        return matches.getFirst().dir();
    }

    /**
     * The image directory's name: a hash of the recipe, the build's own files, and the default image it boots with (if
     * any). The options a recipe leaves at their defaults add nothing, so that images built before the options existed
     * keep their names.
     */
    private static String hash(Recipe r, GuestImage base) throws IOException {
        MessageDigest sha = DefaultImage.sha256();
        List<String> parts = new ArrayList<>(List.of(RECIPE_VERSION, r.release(), String.join(",", r.allPackages()),
                String.join("\n", r.commands()), Long.toString(r.sizeMib()), String.valueOf(r.mirror())));
        if (base != null) parts.add(base.kernel().getParent().getFileName().toString());
        if (!r.agent()) parts.add("no agent");
        if (r.bootable()) parts.add("bootable: " + BootableDisk.KERNEL_OPTIONS);
        for (String part : parts) sha.update((part + "\u0000").getBytes(StandardCharsets.UTF_8));
        for (String res : r.resources()) sha.update(resource(res));
        for (FileCopy f : r.files()) {
            sha.update((f.guestPath() + "\u0000").getBytes(StandardCharsets.UTF_8));
            digestTree(sha, f.source());
        }
        return HexFormat.of().formatHex(sha.digest(), 0, 8);
    }

    /** A file's content, or a directory's names, modes and contents. */
    private static void digestTree(MessageDigest sha, Path source) throws IOException {
        try (var all = Files.walk(source)) {
            for (Path p : all.sorted().toList()) {
                sha.update((source.relativize(p) + "\u0000").getBytes(StandardCharsets.UTF_8));
                if (Files.isRegularFile(p)) {
                    sha.update(Files.getPosixFilePermissions(p).toString().getBytes(StandardCharsets.UTF_8));
                    try (InputStream in = Files.newInputStream(p)) {
                        byte[] buf = new byte[65536];
                        for (int n; (n = in.read(buf)) > 0; ) sha.update(buf, 0, n);
                    }
                }
            }
        }
    }

    static byte[] resource(String name) {
        return DefaultImage.resource("debian/" + name);
    }

    private static String resourceText(String name) {
        return new String(resource(name), StandardCharsets.UTF_8);
    }
}
