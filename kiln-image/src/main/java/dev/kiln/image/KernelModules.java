package dev.kiln.image;

import dev.kiln.KilnException;
import org.apache.commons.compress.compressors.gzip.GzipCompressorInputStream;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Stream;

/**
 * The kernel modules an image ships, with their dependencies, in load order. Kernel packages ship no
 * modules.dep (depmod makes it at install time), so dependencies and aliases come from each module's .modinfo.
 *
 * @param builtIn wanted drivers that are compiled into the kernel and need no loading
 * @param load    modules to ship, dependencies first
 */
record KernelModules(List<String> builtIn, List<Module> load) {

    /**
     * A module: its name, its path under /lib/modules/&lt;version&gt;/ (always an uncompressed .ko), its bytes,
     * the modules it needs loaded first and the device aliases it serves.
     */
    record Module(String name, String path, byte[] data, List<String> depends, List<String> aliases) {}

    /** modules.dep as busybox modprobe reads it: each module's full dependency list, the one to load first last. */
    String modulesDep() {
        StringBuilder out = new StringBuilder();
        for (Module m : load) {
            Set<String> needed = new HashSet<>();
            collect(m, needed);
            out.append(m.path()).append(':');
            for (Module d : load.reversed()) if (d != m && needed.contains(d.name())) out.append(' ').append(d.path());
            out.append('\n');
        }
        return out.toString();
    }

    /** modules.alias: which module serves which device alias (a glob such as virtio:d00000003v*). */
    String modulesAlias() {
        StringBuilder out = new StringBuilder();
        for (Module m : load) for (String a : m.aliases()) out.append("alias ").append(a).append(' ').append(m.name()).append('\n');
        return out.toString();
    }

    private void collect(Module m, Set<String> into) {
        for (String dep : m.depends())
            if (into.add(dep)) load.stream().filter(d -> d.name().equals(dep)).forEach(d -> collect(d, into));
    }

    /**
     * @param modulesDir the unpacked /lib/modules/&lt;version&gt;
     * @param busybox    a busybox binary that runs on this host, to unpack .ko.xz (the JDK has no xz)
     */
    static KernelModules select(Path modulesDir, List<String> wanted, Path busybox) {
        Map<String, Path> files = new HashMap<>();
        try (Stream<Path> all = Files.walk(modulesDir.resolve("kernel"))) {
            all.filter(p -> p.getFileName().toString().matches(".*\\.ko(\\.gz|\\.xz|\\.zst)?"))
                    .forEach(p -> files.put(moduleName(p.getFileName().toString()), p));
        } catch (IOException e) {
            throw new KilnException("cannot list kernel modules in " + modulesDir + ": " + e.getMessage(), e);
        }
        Set<String> builtIns = new HashSet<>();
        try {
            Path list = modulesDir.resolve("modules.builtin");
            if (Files.exists(list))
                for (String line : Files.readAllLines(list))
                    builtIns.add(moduleName(line.substring(line.lastIndexOf('/') + 1)));
        } catch (IOException e) {
            throw new KilnException("cannot read modules.builtin in " + modulesDir + ": " + e.getMessage(), e);
        }
        List<String> builtIn = new ArrayList<>();
        Map<String, Module> load = new LinkedHashMap<>();
        for (String name : wanted) {
            if (builtIns.contains(name)) builtIn.add(name);
            else visit(name, files, modulesDir, busybox, load, new HashSet<>());
        }
        return new KernelModules(List.copyOf(builtIn), List.copyOf(load.values()));
    }

    private static void visit(String name, Map<String, Path> files, Path modulesDir, Path busybox,
                              Map<String, Module> load, Set<String> path) {
        if (load.containsKey(name)) return;
        if (!path.add(name)) throw new KilnException("kernel modules depend on each other in a cycle: " + path);
        Path file = files.get(name);
        if (file == null)
            throw new KilnException("kernel module " + name + " is neither built in nor shipped in " + modulesDir);
        byte[] data = uncompressed(file, busybox);
        byte[] info = Elf.of(name + ".ko", data).section(".modinfo")
                .orElseThrow(() -> new KilnException("kernel module " + file + " has no .modinfo section"));
        List<String> depends = new ArrayList<>(), aliases = new ArrayList<>();
        for (String field : new String(info, StandardCharsets.UTF_8).split("\0")) {
            if (field.startsWith("depends="))
                Stream.of(field.substring(8).split(",")).filter(s -> !s.isEmpty()).map(s -> s.replace('-', '_')).forEach(depends::add);
            if (field.startsWith("alias=")) aliases.add(field.substring(6));
        }
        for (String dep : depends) visit(dep, files, modulesDir, busybox, load, path);
        String rel = modulesDir.relativize(file).toString().replaceFirst("\\.(gz|xz|zst)$", "");
        load.put(name, new Module(name, rel, data, List.copyOf(depends), List.copyOf(aliases)));
    }

    /** Busybox insmod may lack xz/zstd support, and loading plain .ko is fastest: unpack at build time. */
    private static byte[] uncompressed(Path file, Path busybox) {
        String name = file.getFileName().toString();
        try {
            if (name.endsWith(".ko")) return Files.readAllBytes(file);
            if (name.endsWith(".gz"))
                try (InputStream in = new GzipCompressorInputStream(Files.newInputStream(file))) {
                    return in.readAllBytes();
                }
            List<String> cmd = name.endsWith(".xz") ? List.of(busybox.toString(), "xzcat", file.toString())
                    : List.of("zstd", "-dcq", file.toString());
            Process p = new ProcessBuilder(cmd).redirectError(ProcessBuilder.Redirect.DISCARD).start();
            byte[] out = p.getInputStream().readAllBytes();
            if (p.waitFor() != 0)
                throw new KilnException("cannot decompress kernel module " + file + " with " + String.join(" ", cmd)
                        + (name.endsWith(".zst") ? " (is zstd installed? apt-get install zstd)" : ""));
            return out;
        } catch (IOException e) {
            throw new KilnException("cannot read kernel module " + file + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while decompressing " + file, e);
        }
    }

    /** virtio-rng.ko is the module virtio_rng: the kernel treats '-' and '_' alike in module names. */
    static String moduleName(String fileName) {
        return fileName.replaceFirst("\\.ko(\\.gz|\\.xz|\\.zst)?$", "").replace('-', '_');
    }
}
