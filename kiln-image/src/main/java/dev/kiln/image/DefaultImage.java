package dev.kiln.image;

import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.support.KilnCache;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.channels.FileChannel;
import java.nio.channels.FileLock;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;
import java.util.zip.CRC32C;
import java.util.stream.Stream;

/**
 * Kiln's default guest image: a Debian cloud kernel and an initramfs holding busybox, qemu-guest-agent with its
 * libraries and the virtio drivers, built on this machine from Debian packages ({@code apt-get download}, never
 * installed) and cached by content hash under {@link #cacheRoot()}.
 *
 * <p>{@link #get} costs a few milliseconds once built: it reads a small manifest and does not ask apt whether
 * newer packages exist. {@link #build} asks apt, and rebuilds when the packages or the recipe changed.
 */
public final class DefaultImage {
    private DefaultImage() {}

    /** The line the image prints on its console once qemu-ga listens on its port (on vsock: once it was started). */
    public static final String READY_MARKER = "KILN-READY";
    /** What the image needs on the kernel command line: a panic (say, init dying) ends the VM at once. */
    public static final String CMDLINE = "panic=-1";

    static final String KERNEL_META = "linux-image-cloud-amd64";
    static final List<String> ROOT_PACKAGES = List.of("busybox-static", "qemu-guest-agent");
    static final String AGENT = "/usr/sbin/qemu-ga";
    /** Drivers the image ships (unless built into the kernel); init loads those whose devices exist. */
    static final List<String> MODULES = List.of("virtio_mmio", "virtio_pci", "virtio_console", "virtio_rng",
            "virtio_net", "virtio_blk", "vsock", "vmw_vsock_virtio_transport_common", "vmw_vsock_virtio_transport", "virtiofs");
    /**
     * Uncompressed boots faster under TCG on microvm than gzip (8.7 vs 3.7 MiB; medians of 5, KILN-READY 2.59 vs
     * 2.87 s): the emulated inflate costs more than copying the bytes. See InitramfsCompressionBench.
     */
    static final boolean GZIP = false;
    /** Bump when the builder's output changes for the same inputs. */
    private static final String RECIPE_VERSION = "2";

    private static final String CURRENT = "current";
    private static final String MANIFEST = "image.properties";
    private static final ReentrantLock BUILDING = new ReentrantLock();

    /** The default image: the cached one when there is one for this recipe, else built now. */
    public static GuestImage get(Consumer<String> progress) {
        GuestImage cached = cached();
        return cached != null ? cached : build(false, progress);
    }

    /** {@link #get(Consumer)} without progress output. */
    public static GuestImage get() {
        return get(line -> {});
    }

    /**
     * Resolves the packages with apt and builds the image unless one for exactly these inputs is cached;
     * {@code force} rebuilds regardless. Progress lines go to {@code progress}.
     */
    public static GuestImage build(boolean force, Consumer<String> progress) {
        Path images = cacheRoot().resolve("images");
        BUILDING.lock(); // a FileLock is per process: threads of one JVM queue here first
        try {
            Files.createDirectories(images);
            try (FileChannel lockFile = FileChannel.open(images.resolve(".lock"), StandardOpenOption.CREATE, StandardOpenOption.WRITE);
                 FileLock ignored = lockFile.lock()) {
                return new ImageBuilder(cacheRoot(), images, recipe(), progress).build(force);
            }
        } catch (IOException e) {
            throw new KilnException("cannot build the default image in " + images + ": " + e.getMessage(), e);
        } finally {
            BUILDING.unlock();
        }
    }

    /** The cache: {@code $KILN_CACHE}, else {@code $XDG_CACHE_HOME/kiln}, else {@code ~/.cache/kiln}. */
    public static Path cacheRoot() {
        return KilnCache.root();
    }

    /**
     * What the default image is made of, for {@code kiln doctor}: the cached image's packages when there is one,
     * else what apt would fetch now (or why it cannot).
     *
     * @param cacheRoot  where images and downloaded packages are kept
     * @param imageDir   the cached image's directory, or null
     * @param cached     whether {@link #get} would return at once
     * @param packages   package name to version: the cached image's, else apt's candidates
     * @param kernel     kernel release (uname -r) of the cached image, or null
     * @param modules    modules the cached image ships, dependencies first; init loads those its devices need
     * @param builtIn    wanted drivers that the kernel has built in
     * @param problem    why the image cannot be built here, or null
     */
    public record Description(Path cacheRoot, Path imageDir, boolean cached, Map<String, String> packages,
                              String kernel, List<String> modules, List<String> builtIn, String problem) {
        public List<String> lines() {
            List<String> l = new ArrayList<>();
            l.add("cache: " + cacheRoot);
            l.add(cached ? "default image: cached in " + imageDir + " (kernel " + kernel + ")"
                    : "default image: not built yet (built on first use, or by `kiln image build`)");
            packages.forEach((name, version) -> l.add("  " + name + " " + version));
            if (!modules.isEmpty()) l.add("  modules: " + String.join(" ", modules));
            if (!builtIn.isEmpty()) l.add("  built into the kernel: " + String.join(" ", builtIn));
            if (problem != null) l.add("cannot build here: " + problem);
            return l;
        }
    }

    /** What the default image is made of; asks apt (about a second) only when no image is cached. */
    public static Description describe() {
        Path root = cacheRoot();
        Properties m = currentManifest();
        if (m != null && cached() != null)
            return new Description(root, imageDir(m), true, packages(m.getProperty("packages")), m.getProperty("kernelVersion"),
                    list(m.getProperty("modules")), list(m.getProperty("builtIn")), null);
        try {
            Apt.requireDebianLike();
            List<String> names = new ArrayList<>(List.of(Apt.resolveMeta(KERNEL_META, "linux-image-")));
            names.add(ROOT_PACKAGES.getFirst());
            names.addAll(Apt.dependencyClosure(ROOT_PACKAGES.getLast()));
            Map<String, String> versions = new LinkedHashMap<>();
            Apt.locate(names).forEach(p -> versions.put(p.name(), p.version()));
            return new Description(root, null, false, versions, null, List.of(), List.of(), null);
        } catch (KilnException e) {
            return new Description(root, null, false, Map.of(), null, List.of(), List.of(), e.getMessage());
        }
    }

    /** The cached image for the current recipe, or null; only reads the small manifest. */
    static GuestImage cached() {
        Properties m = currentManifest();
        if (m == null || !recipe().equals(m.getProperty("recipe"))) return null;
        GuestImage image = fromManifest(imageDir(m), m);
        return Files.isRegularFile(image.kernel()) && Files.isRegularFile(image.initrd()) ? image : null;
    }

    static GuestImage fromManifest(Path dir, Properties m) {
        return new GuestImage(dir.resolve(m.getProperty("kernel")), dir.resolve(m.getProperty("initrd")),
                m.getProperty("cmdline"), m.getProperty("readyMarker"), true, m.getProperty("description"));
    }

    private static Properties currentManifest() {
        Path images = cacheRoot().resolve("images");
        try {
            String hash = Files.readString(images.resolve(CURRENT)).strip();
            return load(images.resolve(hash).resolve(MANIFEST));
        } catch (IOException e) {
            return null;
        }
    }

    private static Path imageDir(Properties m) {
        return cacheRoot().resolve("images").resolve(m.getProperty("hash"));
    }

    static Properties load(Path file) throws IOException {
        Properties p = new Properties();
        try (InputStream in = Files.newInputStream(file)) {
            p.load(in);
        }
        return p;
    }

    static void store(Properties p, Path file) throws IOException {
        try (OutputStream out = Files.newOutputStream(file)) {
            p.store(out, "kiln default image");
        }
    }

    /** Points {@code images/current} at an image directory, atomically. */
    static void makeCurrent(Path images, String hash) throws IOException {
        Path tmp = Files.createTempFile(images, ".current", "");
        Files.writeString(tmp, hash + "\n");
        try {
            Files.move(tmp, images.resolve(CURRENT), StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
        } catch (AtomicMoveNotSupportedException e) {
            Files.move(tmp, images.resolve(CURRENT), StandardCopyOption.REPLACE_EXISTING);
        }
    }

    private static Map<String, String> packages(String list) {
        Map<String, String> m = new LinkedHashMap<>();
        for (String p : list(list)) m.put(p.substring(0, p.indexOf('=')), p.substring(p.indexOf('=') + 1));
        return m;
    }

    static List<String> list(String s) {
        return s == null || s.isBlank() ? List.of() : List.of(s.split(" "));
    }

    private static volatile String recipe;

    /**
     * A checksum of everything that shapes the image besides the packages: the scripts and the builder's choices.
     * CRC32C, not SHA-256: it only has to notice a changed recipe, and a cold MessageDigest costs ~20 ms of the
     * few a cache hit may take.
     */
    static String recipe() {
        String r = recipe;
        if (r == null) {
            CRC32C crc = new CRC32C();
            crc.update((RECIPE_VERSION + "|" + MODULES + "|" + GZIP + "|" + CMDLINE + "|" + READY_MARKER).getBytes(StandardCharsets.UTF_8));
            crc.update(resource("init.sh"));
            crc.update(resource("shutdown.sh"));
            recipe = r = String.format("%08x", crc.getValue());
        }
        return r;
    }

    static byte[] resource(String name) {
        try (InputStream in = DefaultImage.class.getResourceAsStream(name)) {
            if (in == null) throw new KilnException("kiln-image is missing its resource " + name);
            return in.readAllBytes();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static MessageDigest sha256() {
        try {
            return MessageDigest.getInstance("SHA-256");
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    static void deleteTree(Path dir) {
        if (!Files.exists(dir)) return;
        try (Stream<Path> all = Files.walk(dir)) {
            for (Path p : all.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        } catch (IOException e) {
            throw new KilnException("cannot delete " + dir + ": " + e.getMessage(), e);
        }
    }

    static String mib(long bytes) {
        return String.format("%.1f MiB", bytes / 1048576.0);
    }

    static String since(long startNanos) {
        return Text.human(Duration.ofNanos(System.nanoTime() - startNanos));
    }

    static String joined(List<String> l) {
        return String.join(" ", l);
    }
}
