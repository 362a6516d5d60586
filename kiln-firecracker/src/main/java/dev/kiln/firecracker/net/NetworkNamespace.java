package dev.kiln.firecracker.net;

import dev.kiln.KilnException;
import dev.kiln.support.Executables;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A named network namespace with tap devices in it, made with iproute2's {@code ip} (needs root). Run a
 * jailed Firecracker in it with {@code Jailer.withNetns(ns.path())}, a direct one with
 * {@code FirecrackerMachine.Builder.netns}. {@link #close()} deletes the namespace and with it its taps.
 */
public final class NetworkNamespace implements AutoCloseable {
    private final String name;
    private final List<String> taps = new ArrayList<>();
    private boolean closed;

    private NetworkNamespace(String name) {
        this.name = name;
    }

    /** Creates namespace {@code name} (with its loopback up). */
    public static NetworkNamespace create(String name) {
        if (!name.matches("[A-Za-z0-9_.-]{1,64}")) throw new IllegalArgumentException("not a namespace name: '" + name + "'");
        ip("netns", "add", name);
        NetworkNamespace ns = new NetworkNamespace(name);
        try {
            ns.exec("ip", "link", "set", "lo", "up");
        } catch (RuntimeException e) {
            ns.close();
            throw e;
        }
        return ns;
    }

    public String name() { return name; }

    /** The file that names the namespace, as {@code --netns} takes it. */
    public Path path() {
        return Path.of("/var/run/netns", name);
    }

    /** Creates tap {@code tapName} in the namespace with {@code hostCidr} (e.g. {@code 192.168.0.1/30}) and brings it up. */
    public synchronized String addTap(String tapName, String hostCidr) {
        if (tapName.length() > 15) throw new IllegalArgumentException("interface names have at most 15 characters: '" + tapName + "'");
        exec("ip", "tuntap", "add", "dev", tapName, "mode", "tap");
        taps.add(tapName);
        exec("ip", "addr", "add", hostCidr, "dev", tapName);
        exec("ip", "link", "set", tapName, "up");
        return tapName;
    }

    public synchronized List<String> taps() {
        return List.copyOf(taps);
    }

    /** Runs a command in the namespace; fails with its output when it fails. */
    public String exec(String... argv) {
        List<String> all = new ArrayList<>(List.of("netns", "exec", name));
        all.addAll(List.of(argv));
        return ip(all.toArray(String[]::new));
    }

    /** The command prefix that runs a program in this namespace. */
    public List<String> execPrefix() {
        return List.of(ipBinary(), "netns", "exec", name);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        ip("netns", "del", name);
    }

    private static String ipBinary() {
        return Executables.find("ip").map(Path::toString).orElseThrow(() ->
                new KilnException("network namespaces need iproute2's 'ip' on PATH (apt-get install iproute2)"));
    }

    private static String ip(String... args) {
        List<String> argv = new ArrayList<>();
        argv.add(ipBinary());
        argv.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            if (!p.waitFor(30, TimeUnit.SECONDS)) {
                p.destroyForcibly();
                throw new KilnException(String.join(" ", argv) + " did not finish within 30 s");
            }
            if (p.exitValue() != 0) throw new KilnException(String.join(" ", argv) + " failed (exit " + p.exitValue() + "): " + out.strip());
            return out;
        } catch (IOException e) {
            throw new KilnException("cannot run " + String.join(" ", argv) + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted running " + String.join(" ", argv), e);
        }
    }
}
