package dev.kiln.support;

import java.nio.file.Path;

/** Where Kiln keeps what it builds and downloads (images, extracted kernels, packages): one place for every module. */
public final class KilnCache {
    private KilnCache() {}

    /** {@code $KILN_CACHE}, else {@code $XDG_CACHE_HOME/kiln}, else {@code ~/.cache/kiln}. */
    public static Path root() {
        String kiln = System.getenv("KILN_CACHE"), xdg = System.getenv("XDG_CACHE_HOME");
        if (kiln != null && !kiln.isBlank()) return Path.of(kiln).toAbsolutePath();
        if (xdg != null && !xdg.isBlank()) return Path.of(xdg, "kiln").toAbsolutePath();
        return Path.of(System.getProperty("user.home"), ".cache", "kiln");
    }
}
