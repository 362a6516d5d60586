package dev.kiln.firecracker;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.regex.Pattern;

/**
 * How to run Firecracker through its jailer: the user and group it drops to, where the chroots live, and the
 * jailer's options. Immutable; each {@code with*} returns a new one. The jailer needs root.
 *
 * <p>Layout: the jail of microVM {@code id} is {@code <chrootBaseDir>/<exec file name>/<id>/root}; the
 * jailer copies Firecracker there, creates {@code /dev/kvm}, {@code /dev/net/tun}… and chroots into it, so
 * every path Firecracker is given (API socket, FIFOs, drives, kernel) is a path inside that root.
 */
public record Jailer(String binary, int uid, int gid, Path chrootBaseDir, Path netns, boolean daemonize,
                     boolean newPidNs, List<String> cgroups, Integer cgroupVersion, List<String> resourceLimits,
                     String parentCgroup) {
    private static final Pattern JAIL_ID = Pattern.compile("[A-Za-z0-9-]{1,64}");
    private static final Pattern KEY_VALUE = Pattern.compile("[A-Za-z0-9_.-]+=\\S+");

    public Jailer {
        Objects.requireNonNull(binary, "binary");
        Objects.requireNonNull(chrootBaseDir, "chrootBaseDir");
        if (uid < 0 || gid < 0) throw new IllegalArgumentException("uid and gid must not be negative: " + uid + ", " + gid);
        cgroups = List.copyOf(cgroups);
        resourceLimits = List.copyOf(resourceLimits);
        for (String c : cgroups) requireKeyValue(c, "cgroup", "cpu.shares=10");
        for (String r : resourceLimits) requireKeyValue(r, "resource limit", "no-file=1024");
        if (cgroupVersion != null && cgroupVersion != 1 && cgroupVersion != 2)
            throw new IllegalArgumentException("cgroup version must be 1 or 2, got " + cgroupVersion);
        if (!chrootBaseDir.isAbsolute()) throw new IllegalArgumentException("chrootBaseDir must be absolute: " + chrootBaseDir);
    }

    /**
     * The jailer named by {@code JAILER_BIN} (else {@code jailer} on PATH), dropping to {@code uid}/{@code gid},
     * with jails under {@code chrootBaseDir}.
     */
    public static Jailer of(int uid, int gid, Path chrootBaseDir) {
        return new Jailer(System.getenv().getOrDefault("JAILER_BIN", "jailer"), uid, gid, chrootBaseDir, null, false,
                false, List.of(), null, List.of(), null);
    }

    public Jailer withBinary(String v) { return new Jailer(v, uid, gid, chrootBaseDir, netns, daemonize, newPidNs, cgroups, cgroupVersion, resourceLimits, parentCgroup); }

    /** {@code --netns}: the network namespace (a path such as {@code /var/run/netns/NAME}) to join. */
    public Jailer withNetns(Path v) { return new Jailer(binary, uid, gid, chrootBaseDir, v, daemonize, newPidNs, cgroups, cgroupVersion, resourceLimits, parentCgroup); }

    /**
     * {@code --daemonize}: the jailer calls setsid and points stdio to /dev/null, so there is no serial
     * console and Firecracker leaves Kiln's process group; Kiln then watches it by its pid.
     */
    public Jailer withDaemonize(boolean v) { return new Jailer(binary, uid, gid, chrootBaseDir, netns, v, newPidNs, cgroups, cgroupVersion, resourceLimits, parentCgroup); }

    /** {@code --new-pid-ns}: Firecracker runs as pid 1 of a new pid namespace; Kiln reads its host pid from the jail's pid file. */
    public Jailer withNewPidNs(boolean v) { return new Jailer(binary, uid, gid, chrootBaseDir, netns, daemonize, v, cgroups, cgroupVersion, resourceLimits, parentCgroup); }

    /** Adds {@code --cgroup file=value}, e.g. {@code cpu.shares=10} (v1) or {@code cpu.weight=10} (v2). */
    public Jailer withCgroup(String fileEqualsValue) {
        List<String> more = new ArrayList<>(cgroups);
        more.add(fileEqualsValue);
        return new Jailer(binary, uid, gid, chrootBaseDir, netns, daemonize, newPidNs, more, cgroupVersion, resourceLimits, parentCgroup);
    }

    public Jailer withCgroupVersion(int v) { return new Jailer(binary, uid, gid, chrootBaseDir, netns, daemonize, newPidNs, cgroups, v, resourceLimits, parentCgroup); }

    /** Adds {@code --resource-limit resource=value}: {@code fsize=…} or {@code no-file=…}. */
    public Jailer withResourceLimit(String resourceEqualsValue) {
        List<String> more = new ArrayList<>(resourceLimits);
        more.add(resourceEqualsValue);
        return new Jailer(binary, uid, gid, chrootBaseDir, netns, daemonize, newPidNs, cgroups, cgroupVersion, more, parentCgroup);
    }

    /** {@code --parent-cgroup}: the cgroup under which the microVM's own is created (default: the exec file's name). */
    public Jailer withParentCgroup(String v) { return new Jailer(binary, uid, gid, chrootBaseDir, netns, daemonize, newPidNs, cgroups, cgroupVersion, resourceLimits, v); }

    /** True when the jailer process ends before Firecracker does (it forks): Kiln must find Firecracker by its pid. */
    public boolean forks() {
        return daemonize || newPidNs;
    }

    static String requireJailId(String id) {
        if (!JAIL_ID.matcher(id).matches())
            throw new IllegalArgumentException("the jailer takes ids of 1 to 64 letters, digits and '-', got '" + id + "'");
        return id;
    }

    private static void requireKeyValue(String s, String what, String example) {
        if (s == null || !KEY_VALUE.matcher(s).matches())
            throw new IllegalArgumentException("a " + what + " must look like " + example + ", got '" + s + "'");
    }

    /** The jailer's command line for microVM {@code id}, with Firecracker's own arguments after {@code --}. */
    public List<String> commandLine(String id, Path execFile, List<String> firecrackerArguments) {
        List<String> a = new ArrayList<>(List.of(binary, "--id", requireJailId(id), "--exec-file", execFile.toString(),
                "--uid", Integer.toString(uid), "--gid", Integer.toString(gid),
                "--chroot-base-dir", chrootBaseDir.toString()));
        if (netns != null) a.addAll(List.of("--netns", netns.toString()));
        if (daemonize) a.add("--daemonize");
        if (newPidNs) a.add("--new-pid-ns");
        for (String c : cgroups) a.addAll(List.of("--cgroup", c));
        if (cgroupVersion != null) a.addAll(List.of("--cgroup-version", cgroupVersion.toString()));
        for (String r : resourceLimits) a.addAll(List.of("--resource-limit", r));
        if (parentCgroup != null) a.addAll(List.of("--parent-cgroup", parentCgroup));
        a.add("--");
        a.addAll(firecrackerArguments);
        return a;
    }
}
