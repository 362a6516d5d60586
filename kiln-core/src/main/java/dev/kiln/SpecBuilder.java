package dev.kiln;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.CompletionStage;

/**
 * The settings every backend understands, shared by {@link MachineSpec.Builder} and the backends' own builders
 * ({@code QemuMachine.builder()}, {@code FirecrackerMachine.builder()}), which add their own. Setters check their
 * argument at once; {@link #spec()} checks the whole and names the field at fault. No setter does I/O.
 *
 * @param <B> the concrete builder, so that chains keep its type
 */
public abstract class SpecBuilder<B extends SpecBuilder<B>> {
    private Backend backend;
    private String name;
    private GuestImage image;
    private boolean bootsGuest = true;
    private int cpus = 1;
    private int memoryMib = 256;
    private String kernelArgs = "";
    private final List<Drive> drives = new ArrayList<>();
    private final List<Nic> nics = new ArrayList<>();
    private int vsockCid;
    private List<Probe> readiness;
    private Duration launchTimeout = Duration.ofSeconds(30);
    private Duration readyTimeout = Duration.ofSeconds(120);
    private Duration shutdownTimeout = Duration.ofSeconds(30);
    private Duration timeLimit;
    private CompletionStage<?> cancelToken;
    private Path consoleLog;
    private Path workDirBase = Path.of(System.getProperty("java.io.tmpdir"));
    private final Map<Backend, BackendOptions> options = new LinkedHashMap<>();
    private final List<Share> shares = new ArrayList<>();
    private CloudInit cloudInit;
    private SshAccess sshAccess;
    private GuestChannel guestChannel = GuestChannel.AUTO;
    private Firmware firmware = Firmware.BIOS;
    private java.net.InetSocketAddress sshAt;

    protected SpecBuilder() {}

    /** Whether the spec so far boots a guest (false after {@link #noGuest()}). */
    protected boolean bootsGuest() {
        return bootsGuest;
    }

    @SuppressWarnings("unchecked")
    private B self() {
        return (B) this;
    }

    /** Starts all settings from an existing spec. */
    public B from(MachineSpec spec) {
        backend = spec.backend();
        name = spec.name().orElse(null);
        image = spec.image().orElse(null);
        bootsGuest = spec.bootsGuest();
        cpus = spec.cpus();
        memoryMib = spec.memoryMib();
        kernelArgs = spec.kernelArgs();
        drives.clear();
        drives.addAll(spec.drives());
        nics.clear();
        nics.addAll(spec.nics());
        vsockCid = spec.vsockCid().orElse(0);
        readiness = spec.readiness().orElse(null);
        launchTimeout = spec.launchTimeout();
        readyTimeout = spec.readyTimeout();
        shutdownTimeout = spec.shutdownTimeout();
        timeLimit = spec.timeLimit().orElse(null);
        cancelToken = spec.cancelToken().orElse(null);
        consoleLog = spec.consoleLog().orElse(null);
        workDirBase = spec.workDirBase();
        options.clear();
        spec.options().forEach(o -> options.put(o.backend(), o));
        shares.clear();
        shares.addAll(spec.shares());
        cloudInit = spec.cloudInit().orElse(null);
        sshAccess = spec.sshAccess().orElse(null);
        guestChannel = spec.guestChannel();
        firmware = spec.firmware();
        sshAt = spec.sshAt().orElse(null);
        return self();
    }

    /** The VMM to run on; default {@code $KILN_BACKEND}, else QEMU. */
    public B backend(Backend backend) {
        this.backend = Objects.requireNonNull(backend, "backend");
        return self();
    }

    /**
     * The machine's id, in logs, work-dir names and evidence (Firecracker's {@code --id} too): 1 to 64 letters, digits
     * and '-', starting with a letter or digit. Default: {@code <backend>-<pid>-<n>}.
     */
    public B name(String name) {
        this.name = MachineSpec.checkName(name);
        return self();
    }

    /** What to boot. Default: Kiln's own image (built, or taken from the cache, when the machine starts). */
    public B image(GuestImage image) {
        this.image = Objects.requireNonNull(image, "image");
        this.bootsGuest = true;
        return self();
    }

    /** Boots Kiln's default image (the default). */
    public B defaultImage() {
        this.image = null;
        this.bootsGuest = true;
        return self();
    }

    /**
     * Starts the VMM with no guest at all: QEMU without a kernel (its CPUs stopped), Firecracker with its API up and
     * no boot source. For driving the VMM itself (QMP, the API); nothing is awaited but the VMM.
     */
    public B noGuest() {
        this.image = null;
        this.bootsGuest = false;
        return self();
    }

    /** A custom kernel and initramfs (no ready marker and no agent known). */
    public B kernel(Path kernel, Path initrd) {
        return image(GuestImage.of(kernel, initrd));
    }

    public B cpus(int cpus) {
        if (cpus < 1 || cpus > 255) throw new IllegalArgumentException("cpus must be 1 to 255, got " + cpus);
        this.cpus = cpus;
        return self();
    }

    public B memoryMib(int mib) {
        if (mib <= 0) throw new IllegalArgumentException("memoryMib must be positive, got " + mib + " MiB");
        if (mib > 1 << 22) throw new IllegalArgumentException("memoryMib of " + mib + " MiB is more than 4 TiB");
        this.memoryMib = mib;
        return self();
    }

    /** Extra kernel arguments, after the image's and the VMM's own. */
    public B kernelArgs(String args) {
        Objects.requireNonNull(args, "kernelArgs");
        if (args.indexOf('\n') >= 0 || args.indexOf('\0') >= 0) {
            throw new IllegalArgumentException("kernelArgs must be one line without NUL characters");
        }
        this.kernelArgs = args.strip();
        return self();
    }

    /** Same as {@link #kernelArgs}: QEMU's name for it. */
    public B append(String args) {
        return kernelArgs(args);
    }

    /** Adds a disk; one without an id is named {@code disk<N>}, N its position among the drives. */
    public B drive(Drive drive) {
        Objects.requireNonNull(drive, "drive");
        drives.add(drive.id().isPresent() ? drive : drive.id("disk" + drives.size()));
        return self();
    }

    /** Drops every drive. */
    public B noDrives() {
        drives.clear();
        return self();
    }

    /** User-mode networking (QEMU only): the guest's eth0 reaches the host through the VMM. */
    public B userNetwork() {
        if (userNetworkIndex() < 0) nics.add(new Nic.UserNetwork(List.of()));
        return self();
    }

    /** Drops user-mode networking and its forwards. */
    public B noUserNetwork() {
        nics.removeIf(n -> n instanceof Nic.UserNetwork);
        return self();
    }

    /**
     * Forwards a guest TCP port from a free port on 127.0.0.1 that the kernel picks when the VMM binds it (so no other
     * process can take it in between); turns user-mode networking on. QEMU only.
     */
    public B forward(int guestPort) {
        return forward(guestPort, 0);
    }

    /** Forwards a guest TCP port from 127.0.0.1:hostPort (0: a free one). */
    public B forward(int guestPort, int hostPort) {
        Nic.Forward f = new Nic.Forward(guestPort, hostPort);
        int i = userNetworkIndex();
        List<Nic.Forward> forwards = new ArrayList<>(i < 0 ? List.of() : ((Nic.UserNetwork) nics.get(i)).forwards());
        if (hostPort != 0 && forwards.stream().anyMatch(o -> o.hostPort() == hostPort)) {
            throw new IllegalArgumentException("forwards: host port " + hostPort + " is forwarded twice");
        }
        forwards.add(f);
        if (i < 0) nics.add(new Nic.UserNetwork(forwards));
        else nics.set(i, new Nic.UserNetwork(forwards));
        return self();
    }

    /** Forwards each port from the same port on the host. */
    public B forwardIdentity(int... ports) {
        for (int p : ports) forward(p, p);
        return self();
    }

    private int userNetworkIndex() {
        for (int i = 0; i < nics.size(); i++) if (nics.get(i) instanceof Nic.UserNetwork) return i;
        return -1;
    }

    /** A NIC on a host tap device ({@code mac} may be null). */
    public B tap(String device, String mac) {
        nics.add(new Nic.Tap(device, mac));
        return self();
    }

    /** A virtio-vsock device with this guest CID (3 or more). */
    public B vsock(int guestCid) {
        if (guestCid < 3) throw new IllegalArgumentException("vsock: guest CIDs start at 3, got " + guestCid);
        this.vsockCid = guestCid;
        return self();
    }

    /**
     * What {@code start()} waits for, in order, before it returns: replaces the default (the image's ready marker,
     * then its guest agent). No probes: start returns as soon as the VMM is up.
     */
    public B readiness(Probe... probes) {
        for (Probe p : probes) Objects.requireNonNull(p, "readiness: a probe is null");
        this.readiness = List.of(probes);
        return self();
    }

    /** Puts back the default readiness: the image's ready marker, then its agent. */
    public B defaultReadiness() {
        this.readiness = null;
        return self();
    }

    /** Spawning the VMM and connecting to it (default 30 s). */
    public B launchTimeout(Duration d) {
        this.launchTimeout = positive(d, "launchTimeout");
        return self();
    }

    /** The readiness probes together (default 120 s: under TCG a boot takes seconds). */
    public B readyTimeout(Duration d) {
        this.readyTimeout = positive(d, "readyTimeout");
        return self();
    }

    /** How long {@code close()} waits for a graceful stop before it kills (default 30 s). */
    public B shutdownTimeout(Duration d) {
        this.shutdownTimeout = positive(d, "shutdownTimeout");
        return self();
    }

    /** Kills the machine once it has run this long, as a cancellation ({@link MachineCancelledException}). */
    public B timeLimit(Duration limit) {
        this.timeLimit = positive(limit, "timeLimit");
        return self();
    }

    /**
     * Kills the machine when {@code token} completes (a test's or request's cancellation); calls under way or later
     * then fail with {@link MachineCancelledException}.
     */
    public B cancelOn(CompletionStage<?> token) {
        this.cancelToken = Objects.requireNonNull(token, "cancelOn");
        return self();
    }

    /** Also writes the console to this file. */
    public B consoleLog(Path file) {
        this.consoleLog = Objects.requireNonNull(file, "consoleLog");
        return self();
    }

    /** Where machines' private work directories go (default: java.io.tmpdir). */
    public B workDirBase(Path dir) {
        this.workDirBase = Objects.requireNonNull(dir, "workDirBase");
        return self();
    }

    /** Shares {@code hostDir} with the guest at {@code guestPath}, writable ({@link Share}). */
    public B share(Path hostDir, String guestPath) {
        return share(hostDir, guestPath, false);
    }

    /** Shares {@code hostDir} with the guest at {@code guestPath}, mounted by Kiln once the guest is ready. */
    public B share(Path hostDir, String guestPath, boolean readOnly) {
        return share(new Share(hostDir, guestPath, readOnly, Share.Transport.AUTO));
    }

    public B share(Share share) {
        shares.add(Objects.requireNonNull(share, "share"));
        return self();
    }

    /**
     * Configures the guest with cloud-init (a NoCloud cidata drive Kiln writes), and reaches it over SSH with a key Kiln
     * makes for the machine when the image has no guest agent. QEMU only (Firecracker's guests get no cidata drive yet).
     */
    public B cloudInit(CloudInit config) {
        this.cloudInit = Objects.requireNonNull(config, "cloudInit");
        return self();
    }

    /** Logs in over SSH with this access (an image with its own sshd and keys, without Kiln's cloud-init). */
    public B ssh(SshAccess access) {
        this.sshAccess = Objects.requireNonNull(access, "ssh");
        return self();
    }

    /**
     * Where the host reaches the guest's sshd directly: its address on a tap or cable (set it with cloud-init's
     * network-config, say). Default: a forwarded port of 127.0.0.1 on user-mode networking, added when needed.
     */
    public B sshAt(java.net.InetSocketAddress address) {
        this.sshAt = Objects.requireNonNull(address, "sshAt");
        return self();
    }

    /** How {@link Machine#guest()} reaches the guest (default AUTO: the agent when the image has one, else SSH). */
    public B guestChannel(GuestChannel channel) {
        this.guestChannel = Objects.requireNonNull(channel, "guestChannel");
        return self();
    }

    /** What boots a bootable disk image on QEMU (default BIOS: SeaBIOS). */
    public B firmware(Firmware firmware) {
        this.firmware = Objects.requireNonNull(firmware, "firmware");
        return self();
    }

    /** Settings for one backend (e.g. {@code QemuOptions}), used when the spec starts there. */
    public B with(BackendOptions backendOptions) {
        Objects.requireNonNull(backendOptions, "backend options");
        options.put(backendOptions.backend(), backendOptions);
        return self();
    }

    /** The settings so far as an immutable, checked spec. */
    public MachineSpec spec() {
        Backend b = backend != null ? backend : Backend.fromEnvironment();
        return new MachineSpec(b, name, image, bootsGuest, cpus, memoryMib, kernelArgs, drives, withSshForward(b), vsockCid,
                readiness, launchTimeout, readyTimeout, shutdownTimeout, timeLimit, cancelToken, consoleLog, workDirBase,
                List.copyOf(options.values()), shares, cloudInit, sshAccess, guestChannel, firmware, sshAt);
    }

    /**
     * The NICs, plus user-mode networking with a forward to sshd when SSH may be used on QEMU and the spec names no
     * address to reach it at: the host then reaches sshd through a port of 127.0.0.1.
     */
    private List<Nic> withSshForward(Backend b) {
        boolean ssh = cloudInit != null || sshAccess != null;
        if (!ssh || b != Backend.QEMU || sshAt != null) return nics;
        int port = sshAccess != null ? sshAccess.port() : 22;
        List<Nic> out = new ArrayList<>(nics);
        int i = userNetworkIndex();
        List<Nic.Forward> forwards = new ArrayList<>(i < 0 ? List.of() : ((Nic.UserNetwork) nics.get(i)).forwards());
        if (forwards.stream().noneMatch(f -> f.guestPort() == port)) forwards.add(new Nic.Forward(port, 0));
        if (i < 0) out.add(new Nic.UserNetwork(forwards));
        else out.set(i, new Nic.UserNetwork(forwards));
        return out;
    }

    private static Duration positive(Duration d, String field) {
        Objects.requireNonNull(d, field);
        if (d.isNegative() || d.isZero()) throw new IllegalArgumentException(field + " must be positive, got " + d);
        return d;
    }

    /** For a backend's builder: its own options, if set. */
    protected <T extends BackendOptions> T optionsOf(Backend b, Class<T> type) {
        BackendOptions o = options.get(b);
        return type.isInstance(o) ? type.cast(o) : null;
    }

    @Override
    public String toString() {
        return getClass().getSimpleName() + "[" + spec() + "]";
    }
}
