package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.KilnException;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.attribute.PosixFilePermission;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.function.Consumer;
import java.util.stream.Stream;

import static dev.kiln.image.DefaultImage.*;

/** One build of the default image, run while holding the cache lock. */
final class ImageBuilder {
    private static final List<String> LIBRARY_DIRS = List.of("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
            "/lib64", "/usr/lib64", "/lib", "/usr/lib");
    private static final String FSTAB = """
            proc /proc proc nosuid,nodev,noexec 0 0
            sysfs /sys sysfs nosuid,nodev,noexec 0 0
            devtmpfs /dev devtmpfs mode=0755,nosuid 0 0
            tmpfs /run tmpfs mode=0755,nosuid,nodev 0 0
            tmpfs /tmp tmpfs mode=1777,nosuid,nodev 0 0
            """;

    private final Path cacheRoot, images;
    private final String recipe;
    private final Consumer<String> progress;

    ImageBuilder(Path cacheRoot, Path images, String recipe, Consumer<String> progress) {
        this.cacheRoot = cacheRoot;
        this.images = images;
        this.recipe = recipe;
        this.progress = line -> progress.accept("kiln image: " + line);
    }

    GuestImage build(boolean force) throws IOException {
        long start = System.nanoTime();
        removeLeftovers();
        progress.accept("resolving packages (apt-cache)…");
        Apt.requireDebianLike();
        List<String> names = new ArrayList<>(List.of(Apt.resolveMeta(KERNEL_META, "linux-image-"), ROOT_PACKAGES.getFirst()));
        names.addAll(Apt.dependencyClosure(ROOT_PACKAGES.getLast()));
        List<Apt.Package> packages = Apt.locate(names).stream().sorted(Comparator.comparing(Apt.Package::name)).toList();
        String hash = hash(packages);
        Path dir = images.resolve(hash);
        if (!force && Files.isRegularFile(dir.resolve("image.properties"))) {
            makeCurrent(images, hash);
            progress.accept("up to date → " + dir + "/");
            return fromManifest(dir, load(dir.resolve("image.properties")));
        }

        Path debs = Files.createDirectories(cacheRoot.resolve("debs"));
        List<Apt.Package> missing = Apt.missing(packages, debs);
        if (missing.isEmpty()) progress.accept("all " + packages.size() + " packages already downloaded");
        else progress.accept("downloading " + missing.size() + " packages ("
                + mib(missing.stream().mapToLong(Apt.Package::size).sum()) + ", apt-get download)…");
        Apt.download(missing, debs);

        Path work = Files.createTempDirectory(images, ".build-");
        try {
            progress.accept("unpacking " + packages.size() + " packages…");
            Path kernelRoot = work.resolve("kernel"), userRoot = work.resolve("user");
            Apt.Package kernelPackage = packages.stream().filter(p -> p.name().equals(names.getFirst())).findFirst().orElseThrow();
            // The kernel package is most of the work; unpack it alongside the rest.
            var kernelJob = CompletableFuture.runAsync(() -> Apt.unpack(debs.resolve(kernelPackage.fileName()), kernelRoot));
            for (Apt.Package p : packages) if (p != kernelPackage) Apt.unpack(debs.resolve(p.fileName()), userRoot);
            try {
                kernelJob.join();
            } catch (CompletionException e) {
                throw e.getCause() instanceof RuntimeException r ? r : e;
            }
            return assemble(packages, kernelPackage, kernelRoot, userRoot, hash, dir, start);
        } finally {
            deleteTree(work);
        }
    }

    private GuestImage assemble(List<Apt.Package> packages, Apt.Package kernelPackage, Path kernelRoot, Path userRoot,
                                String hash, Path dir, long start) throws IOException {
        Path vmlinuz = only(kernelRoot.resolve("boot"), "vmlinuz-");
        String release = vmlinuz.getFileName().toString().substring("vmlinuz-".length());
        Path modulesDir = Stream.of("lib/modules/", "usr/lib/modules/").map(p -> kernelRoot.resolve(p + release))
                .filter(Files::isDirectory).findFirst()
                .orElseThrow(() -> new KilnException(kernelPackage.fileName() + " ships no /lib/modules/" + release));

        Initramfs fs = new Initramfs();
        Path busybox = Stream.of("bin/busybox", "usr/bin/busybox").map(userRoot::resolve).filter(Files::isRegularFile)
                .findFirst().orElseThrow(() -> new KilnException("busybox-static ships no /bin/busybox"));
        fs.file("/bin/busybox", 0755, busybox);
        // A static x86-64 binary runs on this (x86-64) host; baked-in links spare init a `busybox --install`.
        for (String applet : Apt.run(List.of(busybox.toString(), "--list-full"), null, "busybox --list-full").lines().toList())
            if (!applet.isBlank() && !fs.contains("/" + applet.strip())) fs.symlink("/" + applet.strip(), "/bin/busybox");

        int libraries = addWithLibraries(fs, userRoot, AGENT);

        KernelModules modules = KernelModules.select(modulesDir, MODULES, busybox);
        String moduleDir = "/lib/modules/" + release + "/";
        for (KernelModules.Module m : modules.load()) fs.file(moduleDir + m.path(), 0644, m.data());
        fs.file(moduleDir + "modules.dep", 0644, modules.modulesDep()).file(moduleDir + "modules.alias", 0644, modules.modulesAlias());

        fs.file("/init", 0755, resource("init.sh"))
                .file("/sbin/shutdown", 0755, resource("shutdown.sh"))
                .file("/etc/fstab", 0644, FSTAB)
                .file("/etc/passwd", 0644, "root:x:0:0:root:/root:/bin/sh\n")
                .file("/etc/group", 0644, "root:x:0:\n")
                .fifo("/etc/kiln/tick", 0600)
                .charDevice("/dev/console", 0600, 5, 1)
                .dir("/proc", 0555).dir("/sys", 0555).dir("/run", 0755).dir("/tmp", 01777).dir("/root", 0700)
                .symlink("/var/run", "/run");

        progress.accept("packing initramfs (" + mib(fs.contentBytes()) + ": busybox, qemu-ga + " + libraries
                + " libraries, " + modules.load().size() + " kernel modules)…");
        Path out = Files.createTempDirectory(images, ".new-");
        try {
            Files.copy(vmlinuz, out.resolve(vmlinuz.getFileName()));
            String initrd = GZIP ? "initramfs.cpio.gz" : "initramfs.cpio";
            long size = fs.write(out.resolve(initrd), GZIP);

            Properties m = new Properties();
            m.setProperty("hash", hash);
            m.setProperty("recipe", recipe);
            m.setProperty("kernel", vmlinuz.getFileName().toString());
            m.setProperty("initrd", initrd);
            m.setProperty("initrdBytes", Long.toString(size));
            m.setProperty("kernelVersion", release);
            m.setProperty("cmdline", CMDLINE);
            m.setProperty("readyMarker", READY_MARKER);
            m.setProperty("description", "Kiln default image: Debian kernel " + release + ", "
                    + String.join(", ", packages.stream().filter(p -> p != kernelPackage && !p.name().startsWith("lib")
                    && !p.name().startsWith("gcc-") && !p.name().startsWith("zlib")).map(p -> p.name() + " " + p.version()).toList()));
            m.setProperty("packages", joined(packages.stream().map(p -> p.name() + "=" + p.version()).toList()));
            m.setProperty("modules", joined(modules.load().stream().map(KernelModules.Module::name).toList()));
            m.setProperty("builtIn", joined(modules.builtIn()));
            m.setProperty("built", Instant.now().toString());
            store(m, out.resolve("image.properties"));

            deleteTree(dir); // a forced rebuild of the same inputs
            Files.move(out, dir, StandardCopyOption.ATOMIC_MOVE);
            makeCurrent(images, hash);
            pruneOldImages(dir);
            progress.accept("kernel " + release + ": ships " + joined(modules.load().stream().map(KernelModules.Module::name).toList())
                    + " (loaded when their devices exist)" + (modules.builtIn().isEmpty() ? "" : "; built in: " + joined(modules.builtIn())));
            progress.accept("done in " + since(start) + " → " + dir + "/ (initramfs " + mib(size) + ")");
            return fromManifest(dir, m);
        } finally {
            deleteTree(out);
        }
    }

    /**
     * Adds an executable, its program interpreter and the DT_NEEDED closure of its shared libraries, following
     * symlinks; returns how many libraries (besides the interpreter) it added.
     */
    private static int addWithLibraries(Initramfs fs, Path root, String executable) {
        Elf exe = Elf.read(root.resolve(executable.substring(1)));
        add(fs, root, executable);
        exe.interpreter().ifPresent(interp -> add(fs, root, interp));
        Set<String> seen = new HashSet<>();
        List<String> queue = new ArrayList<>(exe.needed());
        while (!queue.isEmpty()) {
            String soname = queue.removeFirst();
            if (!seen.add(soname)) continue;
            String path = LIBRARY_DIRS.stream().map(d -> d + "/" + soname)
                    .filter(p -> Files.exists(root.resolve(p.substring(1)), LinkOption.NOFOLLOW_LINKS)).findFirst()
                    .orElseThrow(() -> new KilnException(executable + " needs " + soname
                            + ", which none of the fetched packages ships (in " + LIBRARY_DIRS + ")"));
            queue.addAll(Elf.read(root.resolve(add(fs, root, path).substring(1))).needed());
        }
        return seen.size();
    }

    /** Adds a file and every symlink on the way to it; returns the path of the regular file reached. */
    private static String add(Initramfs fs, Path root, String path) {
        try {
            for (int hops = 0; hops < 16; hops++) {
                Path p = root.resolve(path.substring(1));
                if (Files.isSymbolicLink(p)) {
                    String target = Files.readSymbolicLink(p).toString();
                    fs.symlink(path, target);
                    path = target.startsWith("/") ? target : Path.of(path).resolveSibling(target).normalize().toString();
                } else if (Files.isRegularFile(p)) {
                    fs.file(path, mode(p), p);
                    return path;
                } else if (!path.startsWith("/usr/") && Files.exists(root.resolve("usr" + path), LinkOption.NOFOLLOW_LINKS)) {
                    // merged /usr: /lib64 -> usr/lib64 comes from base-files, which is not fetched
                    fs.symlink(path, "/usr" + path);
                    path = "/usr" + path;
                } else {
                    throw new KilnException(path + " is not in the unpacked packages under " + root);
                }
            }
            throw new KilnException("too many symlinks on the way to " + path);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static int mode(Path p) throws IOException {
        int mode = 0;
        for (PosixFilePermission perm : Files.getPosixFilePermissions(p))
            mode |= 1 << (8 - perm.ordinal()); // OWNER_READ is ordinal 0 = bit 8 ... OTHERS_EXECUTE ordinal 8 = bit 0
        return mode;
    }

    private static Path only(Path dir, String prefix) throws IOException {
        try (Stream<Path> files = Files.list(dir)) {
            List<Path> found = files.filter(p -> p.getFileName().toString().startsWith(prefix)).sorted().toList();
            if (found.size() != 1) throw new KilnException("expected one " + prefix + "* in " + dir + ", found " + found);
            return found.getFirst();
        }
    }

    /** The image directory's name: a hash of the recipe and of every input package's SHA-256. */
    private String hash(List<Apt.Package> packages) {
        MessageDigest sha = sha256();
        sha.update(recipe.getBytes(StandardCharsets.UTF_8));
        packages.stream().sorted(Comparator.comparing(Apt.Package::name))
                .forEach(p -> sha.update(("\n" + p.name() + " " + p.sha256()).getBytes(StandardCharsets.UTF_8)));
        return HexFormat.of().formatHex(sha.digest(), 0, 8);
    }

    /** Keeps the new image and the one before it (a running JVM may still boot that one); removes older ones. */
    private void pruneOldImages(Path keep) throws IOException {
        List<Path> old;
        try (Stream<Path> entries = Files.list(images)) {
            old = entries.filter(p -> !p.equals(keep) && !p.getFileName().toString().startsWith(".") && Files.isDirectory(p))
                    .sorted(Comparator.comparing((Path p) -> p.toFile().lastModified()).reversed()).toList();
        }
        for (Path p : old.subList(Math.min(1, old.size()), old.size())) deleteTree(p);
    }

    /** Half-done builds of a killed process; safe to remove because this process holds the cache lock. */
    private void removeLeftovers() throws IOException {
        try (Stream<Path> entries = Files.list(images)) {
            for (Path p : entries.toList()) {
                String n = p.getFileName().toString();
                if (n.startsWith(".build-") || n.startsWith(".new-") || n.startsWith(".current")) deleteTree(p);
            }
        }
    }
}
