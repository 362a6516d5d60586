package dev.kiln;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.concurrent.CompletionStage;
import java.util.regex.Pattern;

/**
 * What a machine is, independent of the VMM that runs it: the image, vCPUs, memory, kernel arguments, drives, NICs, vsock,
 * what {@code start()} waits for, timeouts, and settings for each backend. Immutable and checked when built (a bad
 * spec fails there, naming the field); it does no I/O, and starts on QEMU or Firecracker:
 *
 * <pre>{@code
 * MachineSpec spec = MachineSpec.builder().memoryMib(256).cpus(2).build();
 * try (Machine vm = Kiln.start(spec)) {                       // $KILN_BACKEND, else QEMU
 *     vm.guest().exec("uname", "-r");
 * }
 * try (Machine vm = Kiln.start(spec.withBackend(Backend.FIRECRACKER))) { ... }
 * }</pre>
 */
public final class MachineSpec {
    private static final Pattern NAME = Pattern.compile("[A-Za-z0-9][A-Za-z0-9-]{0,63}");

    private final Backend backend;
    private final String name;
    private final GuestImage image;
    private final boolean bootsGuest;
    private final int cpus;
    private final int memoryMib;
    private final String kernelArgs;
    private final List<Drive> drives;
    private final List<Nic> nics;
    private final int vsockCid;
    private final List<Probe> readiness;
    private final Duration launchTimeout;
    private final Duration readyTimeout;
    private final Duration shutdownTimeout;
    private final Duration timeLimit;
    private final CompletionStage<?> cancelToken;
    private final Path consoleLog;
    private final Path workDirBase;
    private final List<BackendOptions> options;
    private final List<Share> shares;
    private final CloudInit cloudInit;
    private final SshAccess sshAccess;
    private final GuestChannel guestChannel;
    private final Firmware firmware;
    private final java.net.InetSocketAddress sshAt;

    MachineSpec(Backend backend, String name, GuestImage image, boolean bootsGuest, int cpus, int memoryMib,
                String kernelArgs, List<Drive> drives, List<Nic> nics, int vsockCid, List<Probe> readiness, Duration launchTimeout,
                Duration readyTimeout, Duration shutdownTimeout, Duration timeLimit, CompletionStage<?> cancelToken,
                Path consoleLog, Path workDirBase, List<BackendOptions> options, List<Share> shares, CloudInit cloudInit,
                SshAccess sshAccess, GuestChannel guestChannel, Firmware firmware, java.net.InetSocketAddress sshAt) {
        this.backend = backend;
        this.name = name;
        this.image = image;
        this.bootsGuest = bootsGuest;
        this.cpus = cpus;
        this.memoryMib = memoryMib;
        this.kernelArgs = kernelArgs;
        this.drives = List.copyOf(drives);
        this.nics = List.copyOf(nics);
        this.vsockCid = vsockCid;
        this.readiness = readiness == null ? null : List.copyOf(readiness);
        this.launchTimeout = launchTimeout;
        this.readyTimeout = readyTimeout;
        this.shutdownTimeout = shutdownTimeout;
        this.timeLimit = timeLimit;
        this.cancelToken = cancelToken;
        this.consoleLog = consoleLog;
        this.workDirBase = workDirBase;
        this.options = List.copyOf(options);
        this.shares = List.copyOf(shares);
        this.cloudInit = cloudInit;
        this.sshAccess = sshAccess;
        this.guestChannel = guestChannel;
        this.firmware = firmware;
        this.sshAt = sshAt;
        check();
    }

    /** A builder with every default: Kiln's image, 1 vCPU, 256 MiB, no NIC, the backend of {@code $KILN_BACKEND}. */
    public static Builder builder() {
        return new Builder();
    }

    /** The spec with every default. */
    public static MachineSpec defaults() {
        return builder().build();
    }

    /** The builder of {@link MachineSpec}. */
    public static final class Builder extends SpecBuilder<Builder> {
        private Builder() {}

        public MachineSpec build() {
            return spec();
        }
    }

    /** A builder holding this spec's settings, to derive another spec. */
    public Builder toBuilder() {
        return builder().from(this);
    }

    /** This spec on another backend. */
    public MachineSpec withBackend(Backend other) {
        return toBuilder().backend(other).build();
    }

    /** What each backend cannot do, checked before anything starts, so a spec fails with the field at fault. */
    private void check() {
        List<String> problems = new ArrayList<>();
        int userNets = 0;
        for (Nic n : nics) if (n instanceof Nic.UserNetwork) userNets++;
        if (userNets > 1) problems.add("nics: at most one user-mode network");
        if (backend == Backend.FIRECRACKER) {
            if (userNets > 0) {
                problems.add("nics: Firecracker has no user-mode networking (nor port forwards); give it a tap with tap(device, mac)");
            }
            if (cpus > 32) problems.add("cpus: Firecracker runs at most 32 vCPUs, got " + cpus);
            for (Share sh : shares) {
                if (sh.transport() != Share.Transport.AUTO) {
                    problems.add("shares: Firecracker has no virtio-fs nor 9p; " + sh.hostDir() + " can only be a read-only share (Transport.AUTO)");
                } else if (!sh.readOnly()) {
                    problems.add("shares: Firecracker has no shared folders (no virtio-fs, no 9p): a read-only share becomes an ext4"
                            + " drive made from the directory, a writable one cannot be had; make " + sh.hostDir() + " read-only");
                }
            }
            if (cloudInit != null) problems.add("cloudInit: Kiln writes cloud-init volumes for QEMU machines only");
            if (firmware != Firmware.BIOS) problems.add("firmware: Firecracker boots kernels only, with no firmware");
            for (Drive d : drives) {
                if (d.kind() == Drive.Kind.FILE && d.format().orElse(null) == Drive.Format.QCOW2) {
                    problems.add("drives: Firecracker reads raw disks only, and " + d.id().orElse("a drive")
                            + " is qcow2; convert it (qemu-img convert -O raw) or use Drive.overlay(base), which Kiln converts");
                }
            }
        }
        Set<String> ids = new HashSet<>();
        Set<Path> written = new HashSet<>();
        for (Drive d : drives) {
            String id = d.id().orElseThrow();
            if (!ids.add(id)) problems.add("drives: two drives are named " + id);
            Path w = d.kind() == Drive.Kind.FILE && !d.isReadOnly() ? d.file() : d.overlayFile().orElse(null);
            if (w != null && !written.add(w)) problems.add("drives: " + w + " is written by two drives");
        }
        Set<String> mountPoints = new HashSet<>();
        for (Share sh : shares) if (!mountPoints.add(sh.guestPath())) problems.add("shares: two shares are mounted at " + sh.guestPath());
        if (cloudInit != null && sshAccess != null) {
            problems.add("ssh: give either cloudInit (Kiln makes the keys) or ssh(access) (yours), not both");
        }
        if (sshAt != null && cloudInit == null && sshAccess == null) problems.add("sshAt: SSH needs a way in: cloudInit(...) or ssh(access)");
        if (guestChannel == GuestChannel.SSH && cloudInit == null && sshAccess == null) {
            problems.add("guestChannel: SSH needs a way in: cloudInit(...) (Kiln's key) or ssh(access)");
        }
        if (!bootsGuest && readiness != null && !readiness.isEmpty()) {
            problems.add("readiness: a machine without a guest (noGuest()) has nothing to probe");
        }
        if (!problems.isEmpty()) {
            throw new IllegalArgumentException("invalid machine spec for " + backend.displayName() + ": " + String.join("; ", problems));
        }
    }

    static String checkName(String name) {
        if (name == null || !NAME.matcher(name).matches()) {
            throw new IllegalArgumentException("name must be 1 to 64 letters, digits and '-', starting with a letter or"
                    + " digit, got '" + name + "'");
        }
        return name;
    }

    public Backend backend() { return backend; }

    /** The id asked for; empty: one is made up when the machine is created. */
    public Optional<String> name() { return Optional.ofNullable(name); }

    /** The image to boot; empty with {@link #bootsGuest()}: Kiln's default image. */
    public Optional<GuestImage> image() { return Optional.ofNullable(image); }

    /** False for a VMM started with no guest ({@link SpecBuilder#noGuest()}). */
    public boolean bootsGuest() { return bootsGuest; }

    /** True when the default image is to be booted. */
    public boolean usesDefaultImage() { return bootsGuest && image == null; }

    public int cpus() { return cpus; }

    public int memoryMib() { return memoryMib; }

    public String kernelArgs() { return kernelArgs; }

    /** The disks, in the order the VMM gets them; each has its id. */
    public List<Drive> drives() { return drives; }

    public List<Nic> nics() { return nics; }

    /** The user-mode network, if the spec has one. */
    public Optional<Nic.UserNetwork> userNetwork() {
        return nics.stream().filter(n -> n instanceof Nic.UserNetwork).map(n -> (Nic.UserNetwork) n).findFirst();
    }

    public Optional<Integer> vsockCid() { return vsockCid == 0 ? Optional.empty() : Optional.of(vsockCid); }

    /** The probes set; empty: the default (the image's ready marker, then its agent). */
    public Optional<List<Probe>> readiness() { return Optional.ofNullable(readiness); }

    public Duration launchTimeout() { return launchTimeout; }

    public Duration readyTimeout() { return readyTimeout; }

    public Duration shutdownTimeout() { return shutdownTimeout; }

    public Optional<Duration> timeLimit() { return Optional.ofNullable(timeLimit); }

    public Optional<CompletionStage<?>> cancelToken() { return Optional.ofNullable(cancelToken); }

    public Optional<Path> consoleLog() { return Optional.ofNullable(consoleLog); }

    public Path workDirBase() { return workDirBase; }

    /** Every backend's options in the spec. */
    public List<BackendOptions> options() { return options; }

    /** The options of one kind, e.g. {@code options(QemuOptions.class)}. */
    public <T extends BackendOptions> Optional<T> options(Class<T> type) {
        return options.stream().filter(type::isInstance).map(type::cast).findFirst();
    }

    /** The host directories shared with the guest, in order (their tags are {@link Share#tag}(index)). */
    public List<Share> shares() { return shares; }

    /** What cloud-init is to do, when the guest is configured by it. */
    public Optional<CloudInit> cloudInit() { return Optional.ofNullable(cloudInit); }

    /** How to log in over SSH without Kiln's cloud-init, if given. */
    public Optional<SshAccess> sshAccess() { return Optional.ofNullable(sshAccess); }

    public GuestChannel guestChannel() { return guestChannel; }

    public Firmware firmware() { return firmware; }

    /** Where the host reaches the guest's sshd directly, when the spec says ({@link SpecBuilder#sshAt}). */
    public Optional<java.net.InetSocketAddress> sshAt() { return Optional.ofNullable(sshAt); }

    /** Whether the guest can be reached over SSH (Kiln's cloud-init keys, or the spec's access). */
    public boolean sshPossible() { return cloudInit != null || sshAccess != null; }

    @Override
    public String toString() {
        return "MachineSpec[" + backend.displayName() + (name != null ? ", " + name : "")
                + ", " + (bootsGuest ? (image != null ? image.description() : "default image") : "no guest")
                + ", " + cpus + " vCPU, " + memoryMib + " MiB"
                + (kernelArgs.isEmpty() ? "" : ", args '" + kernelArgs + "'")
                + (drives.isEmpty() ? "" : ", drives " + drives) + (nics.isEmpty() ? "" : ", nics " + nics) + (vsockCid == 0 ? "" : ", vsock cid " + vsockCid)
                + (readiness == null ? "" : ", readiness " + readiness) + (shares.isEmpty() ? "" : ", shares " + shares)
                + (cloudInit == null ? "" : ", " + cloudInit) + (sshAccess == null ? "" : ", " + sshAccess)
                + (guestChannel == GuestChannel.AUTO ? "" : ", guest channel " + guestChannel)
                + (firmware == Firmware.BIOS ? "" : ", firmware " + firmware) + "]";
    }
}
