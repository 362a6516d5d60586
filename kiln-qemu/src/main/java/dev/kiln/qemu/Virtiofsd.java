package dev.kiln.qemu;

import dev.kiln.KilnException;
import dev.kiln.Share;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;

/**
 * The virtio-fs daemon of one share: found on this host, and the command line that serves a directory on an
 * already-listening socket (its fd), so that QEMU finds the socket there as soon as it starts. Two flavours exist:
 * QEMU's own C daemon ({@code /usr/lib/qemu/virtiofsd} in Debian 12's qemu-system-common) and the Rust one (the
 * {@code virtiofsd} package of later releases); only the Rust one can refuse writes itself, the C one is made to by a
 * read-only bind mount.
 */
final class Virtiofsd {
    private static final List<String> PLACES = List.of("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd");

    private Virtiofsd() {}

    /** The daemon: $KILN_VIRTIOFSD, else {@code virtiofsd} on PATH, else where Debian puts it. */
    static Path find() {
        return find(System.getenv("KILN_VIRTIOFSD"), Executables.find("virtiofsd"), PLACES);
    }

    static Path find(String env, Optional<Path> onPath, List<String> places) {
        if (env != null && !env.isBlank()) {
            Path p = Path.of(env);
            if (!Files.isExecutable(p)) throw new KilnException("KILN_VIRTIOFSD=" + env + " is not an executable file");
            return p;
        }
        if (onPath.isPresent()) return onPath.get();
        for (String place : places) if (Files.isExecutable(Path.of(place))) return Path.of(place);
        throw new KilnException("shares: virtio-fs needs virtiofsd, which is not on this host (not on PATH, nor in " + places
                + "): install it (apt-get install virtiofsd; on Debian 12 it comes with qemu-system-common), set KILN_VIRTIOFSD,"
                + " or share over 9p (Share.Transport.NINE_P)");
    }

    /** Whether {@code binary} is the Rust daemon (its options are words, and it has --readonly). */
    private static boolean rust(Path binary) {
        return RUST.computeIfAbsent(binary, b -> {
            HostCommand.Result r = HostCommand.run(List.of(b.toString(), "--help"), null, Duration.ofSeconds(30), b + " --help");
            return (r.stdout() + r.stderr()).contains("--shared-dir");
        });
    }

    private static final Map<Path, Boolean> RUST = new ConcurrentHashMap<>();

    /** The command that serves {@code share} on the listening socket the daemon gets as fd {@code fd}. */
    static List<String> command(Path binary, Share share, int fd) {
        List<String> cmd = new ArrayList<>();
        String dir = share.hostDir().toString();
        if (rust(binary)) {
            cmd.addAll(List.of(binary.toString(), "--fd=" + fd, "--shared-dir", dir, "--cache", "auto", "--sandbox", "namespace"));
            if (share.readOnly()) cmd.add("--readonly");
        } else {
            // The C daemon has no read-only mode: it runs in a mount namespace of its own, where the folder is a
            // read-only bind mount (its sandbox's bind of the folder stays read-only), so that the host refuses writes
            // whatever the guest mounts.
            if (share.readOnly()) cmd.addAll(List.of("unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                    "mount --bind -o ro -- \"$1\" \"$1\" && shift && exec \"$@\"", "kiln-read-only", dir));
            // FUSE's option parser splits at commas; a backslash escapes one.
            String source = dir.replace("\\", "\\\\").replace(",", "\\,");
            cmd.addAll(List.of(binary.toString(), "--fd=" + fd, "-o", "source=" + source, "-o", "cache=auto"));
        }
        return cmd;
    }
}
