package dev.kiln.cli;

import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.util.concurrent.Callable;

/** {@code kiln image build}: build (or rebuild) the default guest image. */
@Command(name = "image", mixinStandardHelpOptions = true, description = "Manages the default guest image.",
        subcommands = ImageCommand.Build.class)
final class ImageCommand implements Runnable {
    @Override
    public void run() {
        new picocli.CommandLine(this).usage(System.err);
    }

    @Command(name = "build", mixinStandardHelpOptions = true,
            description = "Builds the default image from Debian packages into the cache (kept if up to date).")
    static final class Build implements Callable<Integer> {
        @Option(names = "--force", description = "rebuild even when a cached image is up to date")
        boolean force;

        @Override
        public Integer call() {
            GuestImage image = DefaultImage.build(force, System.err::println);
            System.out.println("kernel " + image.kernel());
            System.out.println("initrd " + image.initrd());
            System.out.println("cmdline " + image.cmdline());
            return 0;
        }
    }
}
