package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import dev.kiln.support.VersionCache;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** What a Firecracker binary is: its version, read once per file ({@code --version}) and compared by release. */
final class FirecrackerBinary {
    private static final Pattern VERSION = Pattern.compile("Firecracker v(\\d+\\.\\d+\\.\\S+)");

    private FirecrackerBinary() {}

    /** The version of {@code binary} (a path, or a name on PATH), e.g. {@code 1.14.2}; asked once per binary file. */
    static String version(String binary) {
        Path file = Executables.find(binary).orElseThrow(() -> new KilnException("Firecracker binary '" + binary + "' not found"))
                .toAbsolutePath();
        return VersionCache.of(file.toString(), b -> read(file));
    }

    private static String read(Path file) {
        HostCommand.Result r = HostCommand.run(List.of(file.toString(), "--version"), null, Duration.ofSeconds(30),
                file + " --version");
        Matcher m = VERSION.matcher(r.stdout());
        if (!r.ok() || !m.find()) {
            throw new KilnException(file + " --version gave no Firecracker version (exit code " + r.exitCode() + "): "
                    + r.complaint());
        }
        return m.group(1);
    }

    /** {@code 1.14.2} and the like without a leading {@code v}, as Firecracker's API reports it too. */
    static String normalize(String version) {
        return version.startsWith("v") ? version.substring(1) : version;
    }

    /** Whether {@code version} is release {@code major.minor} or later; false for one that cannot be read. */
    static boolean atLeast(String version, int major, int minor) {
        Matcher m = Pattern.compile("(\\d+)\\.(\\d+)").matcher(normalize(version));
        if (!m.lookingAt()) return false;
        int ma = Integer.parseInt(m.group(1)), mi = Integer.parseInt(m.group(2));
        return ma > major || ma == major && mi >= minor;
    }
}
