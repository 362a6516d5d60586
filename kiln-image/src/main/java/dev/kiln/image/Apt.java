package dev.kiln.image;

import dev.kiln.KilnException;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** Debian packages through the host's apt: resolved, downloaded into a cache and unpacked, never installed. */
final class Apt {
    private Apt() {}

    /** One package as apt would download it. */
    record Package(String name, String version, String fileName, long size, String sha256) {}

    private static final Pattern URI_LINE = Pattern.compile("^'([^']+)' (\\S+) (\\d+) SHA256:([0-9a-f]{64})$");

    /** Fails with a message saying what to do when this host cannot build the default image. */
    static void requireDebianLike() {
        for (String tool : List.of("apt-get", "apt-cache", "dpkg-deb", "dpkg"))
            if (onPath(tool) == null)
                throw new KilnException(tool + " not found on PATH: the default guest image is built from Debian"
                        + " packages and needs a Debian-like host (Debian, Ubuntu). On other hosts, give a kernel and"
                        + " an initrd yourself: GuestImage.of(kernel, initrd).");
        String arch = run(List.of("dpkg", "--print-architecture"), null, "dpkg --print-architecture").strip();
        if (!arch.equals("amd64"))
            throw new KilnException("the default guest image is x86-64 only and this host's Debian architecture is "
                    + arch + "; give a kernel and an initrd yourself: GuestImage.of(kernel, initrd)");
    }

    /** A metapackage such as linux-image-cloud-amd64 resolved to the package that ships the files. */
    static String resolveMeta(String meta, String realPrefix) {
        String out = run(List.of("apt-cache", "depends", meta), null, "apt-cache depends " + meta);
        for (String line : out.lines().toList()) {
            String l = line.strip();
            if (l.startsWith("Depends: " + realPrefix)) return l.substring("Depends: ".length());
        }
        throw new KilnException("apt-cache depends " + meta + " names no " + realPrefix + "* package:\n" + out);
    }

    /**
     * The package and everything it depends on, recursively, without virtual packages. Pre-Depends are left out:
     * here they are install-time machinery (init-system-helpers pulls in perl), not libraries a binary loads;
     * a library that goes missing this way is caught by the ELF closure, which names it.
     */
    static List<String> dependencyClosure(String root) {
        List<String> cmd = List.of("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends", root);
        Set<String> names = new LinkedHashSet<>();
        for (String line : run(cmd, null, "apt-cache depends " + root).lines().toList())
            if (!line.isBlank() && !Character.isWhitespace(line.charAt(0)) && !line.startsWith("<")) names.add(line.strip());
        return List.copyOf(names);
    }

    /** What apt would download for these packages (candidate versions), without downloading. */
    static List<Package> locate(List<String> names) {
        List<String> cmd = new ArrayList<>(List.of("apt-get", "download", "--print-uris"));
        cmd.addAll(names);
        List<Package> found = new ArrayList<>();
        for (String line : run(cmd, null, "apt-get download --print-uris").lines().toList()) {
            Matcher m = URI_LINE.matcher(line.strip());
            if (!m.matches()) continue;
            String[] parts = m.group(2).split("_");
            if (parts.length != 3) continue;
            found.add(new Package(parts[0], parts[1].replace("%3a", ":"), m.group(2), Long.parseLong(m.group(3)), m.group(4)));
        }
        for (String name : names)
            if (found.stream().noneMatch(p -> p.name().equals(name)))
                throw new KilnException("apt-get download --print-uris gave no file for package " + name
                        + "; run `apt-get update` (as root) and try again");
        return List.copyOf(found);
    }

    /** The packages not yet in {@code dir} with the right size and checksum. */
    static List<Package> missing(List<Package> packages, Path dir) {
        return packages.stream().filter(p -> !verified(dir.resolve(p.fileName()), p)).toList();
    }

    /** Downloads the packages into {@code dir} and checks them against apt's SHA-256. */
    static void download(List<Package> packages, Path dir) {
        if (packages.isEmpty()) return;
        List<String> cmd = new ArrayList<>(List.of("apt-get", "download"));
        packages.forEach(p -> cmd.add(p.name() + "=" + p.version()));
        run(cmd, dir, "apt-get download");
        for (Package p : packages)
            if (!verified(dir.resolve(p.fileName()), p))
                throw new KilnException("apt-get download left no file " + p.fileName() + " with SHA-256 " + p.sha256() + " in " + dir);
    }

    static void unpack(Path deb, Path into) {
        run(List.of("dpkg-deb", "-x", deb.toString(), into.toString()), null, "dpkg-deb -x " + deb.getFileName());
    }

    private static boolean verified(Path file, Package p) {
        try {
            if (!Files.isRegularFile(file) || Files.size(file) != p.size()) return false;
            MessageDigest sha = MessageDigest.getInstance("SHA-256");
            try (InputStream in = Files.newInputStream(file)) {
                byte[] buf = new byte[1 << 16];
                for (int n; (n = in.read(buf)) > 0; ) sha.update(buf, 0, n);
            }
            return HexFormat.of().formatHex(sha.digest()).equals(p.sha256());
        } catch (IOException | NoSuchAlgorithmException e) {
            return false;
        }
    }

    /** Runs a command with C-locale output and returns stdout and stderr together; clear errors when it fails. */
    static String run(List<String> cmd, Path dir, String what) {
        HostCommand.Result r = HostCommand.run(cmd, dir, Duration.ofMinutes(10), what);
        String out = r.stdout() + r.stderr();
        if (r.ok()) return r.stdout();
        if (out.matches("(?s).*(Unable to locate package|No packages found|has no installation candidate"
                + "|Can't select candidate version|Can't select versions? from package).*"))
            throw new KilnException(what + ": a package is unknown to apt on this host; run `apt-get update`"
                    + " (as root) and try again. apt said:\n" + out.strip());
        throw new KilnException(what + " failed (exit " + r.exitCode() + "):\n" + out.strip());
    }

    static Path onPath(String tool) {
        return Executables.find(tool).orElse(null);
    }
}
