package dev.kiln.cli;

import dev.kiln.GuestImage;
import dev.kiln.Text;
import dev.kiln.image.DebianImage;
import dev.kiln.image.DefaultImage;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code kiln image build|list|rm}: the guest images in Kiln's cache. */
@Command(name = "image", mixinStandardHelpOptions = true, description = "Builds, lists and removes guest images.",
        subcommands = {ImageCommand.Build.class, ImageCommand.ListImages.class, ImageCommand.Remove.class})
final class ImageCommand implements Runnable {
    @Override
    public void run() {
        new picocli.CommandLine(this).usage(System.err);
    }

    /** What {@code kiln image build debian} and {@code kiln run --image debian} take to make a Debian image. */
    static final class DebianOptions {
        @Option(names = "--release", description = "Debian release of a Debian image (default ${DEFAULT-VALUE})", defaultValue = "bookworm")
        String release;

        @Option(names = "--packages", split = ",", paramLabel = "PKG", description = "packages to install in a Debian image, comma-separated")
        List<String> packages = new ArrayList<>();

        @Option(names = "--size", description = "a Debian image's disk size, e.g. 2G or 1500M (default: what it needs and room to spare)")
        String size;

        @Option(names = "--copy", paramLabel = "SRC:DEST", description = "copy a host file or directory into a Debian image at DEST")
        List<String> copies = new ArrayList<>();

        @Option(names = "--build-run", paramLabel = "CMD", description = "run a shell command in a Debian image while building it")
        List<String> commands = new ArrayList<>();

        @Option(names = "--bootable", description = "a Debian image as a disk its firmware boots (BIOS or UEFI), with Debian's kernel")
        boolean bootable;

        @Option(names = "--no-agent", description = "a Debian image without qemu-guest-agent: reached over SSH (add"
                + " cloud-init and openssh-server to --packages)")
        boolean noAgent;

        DebianImage.Builder builder() {
            DebianImage.Builder b = DebianImage.builder().release(release).packages(packages);
            if (bootable) b.bootable();
            if (noAgent) b.noAgent();
            if (size != null) b.size(size);
            for (String c : copies) {
                int colon = c.lastIndexOf(':');
                if (colon <= 0) throw new IllegalArgumentException("--copy takes SRC:DEST, got '" + c + "'");
                b.file(Path.of(c.substring(0, colon)), c.substring(colon + 1));
            }
            commands.forEach(b::run);
            return b;
        }

        boolean isDefault() {
            return packages.isEmpty() && size == null && copies.isEmpty() && commands.isEmpty() && release.equals("bookworm")
                    && !bootable && !noAgent;
        }
    }

    @Command(name = "build", mixinStandardHelpOptions = true,
            description = "Builds an image into the cache (kept when up to date): KIND is default (Kiln's initramfs"
                    + " guest) or debian (systemd on an ext4 disk, with --packages).")
    static final class Build implements Callable<Integer> {
        @Parameters(index = "0", arity = "0..1", paramLabel = "KIND", defaultValue = "default", description = "default or debian")
        String kind;

        @Option(names = "--force", description = "rebuild even when a cached image is up to date")
        boolean force;

        @picocli.CommandLine.ArgGroup(exclusive = false)
        DebianOptions debian = new DebianOptions();

        @Override
        public Integer call() {
            GuestImage image = switch (kind) {
                case "default" -> {
                    if (!debian.isDefault()) throw new IllegalArgumentException("--release, --packages, --size, --copy, --build-run, --bootable and --no-agent are for debian images");
                    yield DefaultImage.build(force, System.err::println);
                }
                case "debian" -> debian.builder().build(force, System.err::println);
                default -> throw new IllegalArgumentException("unknown image kind '" + kind + "': default or debian");
            };
            if (!image.firmwareBoot()) {
                System.out.println("kernel " + image.kernel());
                System.out.println("initrd " + image.initrd());
            }
            if (image.rootDisk() != null) System.out.println("disk " + image.rootDisk());
            if (!image.firmwareBoot()) System.out.println("cmdline " + image.cmdline());
            return 0;
        }
    }

    @Command(name = "list", mixinStandardHelpOptions = true, description = "Lists the cached Debian images.")
    static final class ListImages implements Callable<Integer> {
        @Override
        public Integer call() {
            List<DebianImage.Cached> images = DebianImage.list();
            if (images.isEmpty()) System.err.println("no Debian image in " + DebianImage.cacheDir());
            for (DebianImage.Cached c : images) {
                System.out.printf("%s  %s  disk %s (%s used)  built %s%n", c.hash(), c.description(), Text.bytes(c.diskBytes()),
                        Text.bytes(c.usedBytes()), c.built());
            }
            return 0;
        }
    }

    @Command(name = "rm", mixinStandardHelpOptions = true, description = "Removes cached Debian images by hash (or a unique prefix).")
    static final class Remove implements Callable<Integer> {
        @Parameters(arity = "1..*", paramLabel = "HASH")
        List<String> hashes;

        @Override
        public Integer call() {
            for (String h : hashes) System.err.println("removed " + DebianImage.remove(h));
            return 0;
        }
    }
}
