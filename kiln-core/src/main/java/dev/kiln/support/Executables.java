package dev.kiln.support;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/** Finding programs the way a shell does. */
public final class Executables {
    private Executables() {}

    /** {@code name} itself when it contains a slash, else the first executable of that name on PATH. */
    public static Optional<Path> find(String name) {
        if (name.isBlank()) return Optional.empty();
        if (name.contains("/")) return Optional.of(Path.of(name)).filter(Files::isRegularFile).filter(Files::isExecutable);
        for (String dir : path().split(":")) {
            Path p = Path.of(dir.isEmpty() ? "." : dir, name);
            if (Files.isRegularFile(p) && Files.isExecutable(p)) return Optional.of(p);
        }
        return Optional.empty();
    }

    public static String path() {
        return System.getenv().getOrDefault("PATH", "/usr/bin:/bin");
    }
}
