package dev.kiln;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;

/**
 * What to boot: a kernel, an optional initramfs and the kernel command line the image needs.
 *
 * @param kernel       bzImage or uncompressed vmlinux
 * @param initrd       initramfs, or null
 * @param cmdline      kernel arguments the image needs (the VMM adds its own console arguments)
 * @param readyMarker  a line the image prints on its console once its agent runs, or null when it prints none
 * @param description  what the image is, for logs and reports
 */
public record GuestImage(Path kernel, Path initrd, String cmdline, String readyMarker, String description) {
    public GuestImage {
        Objects.requireNonNull(kernel, "kernel");
        cmdline = cmdline == null ? "" : cmdline;
        description = description == null ? kernel.toString() : description;
    }

    /** A custom kernel and initrd, with no ready marker known. */
    public static GuestImage of(Path kernel, Path initrd) {
        return new GuestImage(kernel, initrd, "", null, null);
    }

    public GuestImage withCmdline(String extra) {
        return new GuestImage(kernel, initrd, (cmdline + " " + extra).strip(), readyMarker, description);
    }

    /** Fails, before anything is spawned, when a file is missing or unreadable. */
    public GuestImage validate() {
        check("kernel", kernel);
        if (initrd != null) check("initrd", initrd);
        return this;
    }

    private static void check(String what, Path p) {
        if (!Files.exists(p)) throw new KilnException(what + " not found: " + p.toAbsolutePath());
        if (!Files.isRegularFile(p)) throw new KilnException(what + " is not a regular file: " + p.toAbsolutePath());
        if (!Files.isReadable(p)) throw new KilnException(what + " is not readable: " + p.toAbsolutePath());
    }
}
