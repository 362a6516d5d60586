package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineSpec;
import dev.kiln.Nic;
import dev.kiln.Snapshot;
import dev.kiln.Text;
import dev.kiln.agent.QgaGuest;
import dev.kiln.firecracker.api.ApiJson;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.FirecrackerApiException;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.firecracker.api.model.MemoryBackend;
import dev.kiln.firecracker.api.model.NetworkOverride;
import dev.kiln.firecracker.api.model.SnapshotCreateParams;
import dev.kiln.firecracker.api.model.SnapshotLoadParams;
import dev.kiln.image.DefaultImage;
import dev.kiln.image.Vmlinux;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCpu;
import dev.kiln.support.KilnCache;
import dev.kiln.support.VmmProcess;
import dev.kiln.vmm.spi.AttachedDrive;
import dev.kiln.vmm.spi.Launch;
import dev.kiln.vmm.spi.VmmDriver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.channels.FileChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;

/**
 * How Firecracker plugs into Kiln's machine core: spawned directly or through the jailer, its API socket awaited,
 * its log and metrics read from FIFOs, the guest configured through the API (boot source, machine, vsock for the
 * agent, taps, then the builder's own steps) and booted with {@code InstanceStart}.
 *
 * <p>The serial console is Firecracker's stdin and stdout, one end of a socket pair whose other end is the machine's
 * console. A jailer that forks ({@code --daemonize}, {@code --new-pid-ns}) leaves Firecracker outside Kiln's child:
 * it is adopted by its pid (a pidfd), and the lifeline kills it and removes the jail if the JVM dies.
 *
 * <p>Snapshots: a saved machine is Firecracker's full snapshot, its microVM state in the file the core names
 * ({@value Snapshot#STATE}) and the guest's memory next to it ({@value #SAVED_MEMORY}). A restore loads both instead
 * of configuring and booting: the memory file is mapped privately (copy-on-write), so the snapshot is never written.
 * A snapshot records the paths of the machine's drives and vsock socket as Firecracker was given them, and a new
 * Firecracker opens exactly those: it can rename no drive, and 1.14 not the vsock socket either (its
 * {@code vsock_override} is newer). So Firecracker runs in a directory of the machine's own — its work dir, or the
 * jail's root, which the jailer makes its working directory — and is given those paths relative to it: drive
 * {@code ID} is {@code drive-ID.raw} (the file itself, a symlink to it, or in a jail a link or copy) and the vsock
 * socket {@code vsock.sock}. A restore puts its own drives (the core's overlays over the snapshot's copies) under
 * the same names in its own directory, and Firecracker opens those; the same holds between a jailed and a direct
 * Firecracker. Taps are host-wide names: a restore gives each interface the spec's tap through
 * {@code network_overrides} where the binary takes it (1.14 does, 1.7 does not); below 1.14 a snapshot records its
 * taps ({@code vmm.taps}) and a restore must use the same ones.
 */
final class FirecrackerDriver implements VmmDriver {
    private static final Logger LOG = LoggerFactory.getLogger(FirecrackerDriver.class);
    private static final Logger VMM_LOG = LoggerFactory.getLogger("dev.kiln.firecracker.vmm");
    /** The vsock port the default image's agent listens on ({@code kiln.agent_port}). */
    static final int IMAGE_AGENT_PORT = 1024;
    /** The guest CID of the agent's vsock device when the spec names none. */
    static final int DEFAULT_GUEST_CID = 3;
    /** The line a healthy Firecracker logs first. */
    static final String RUNNING_MARKER = "Running Firecracker";
    /** What Firecracker logs when a signal (SIGHUP, SIGSEGV, SIGSYS…) ends it. */
    static final String INTERCEPTED_SIGNAL = "Shutting down VM after intercepting signal";
    static final String JAILED_API_SOCKET = "/run/firecracker.socket";
    private static final Pattern EXIT_CODE = Pattern.compile("Firecracker exiting (?:successfully|with error)\\. exit_code=(\\d+)");
    /** A live API answers in milliseconds; a stop must not wait out the full API timeout on a wedged one. */
    private static final Duration STOP_CALL = Duration.ofSeconds(2);
    /** A snapshot's guest memory, next to its state file ({@link Snapshot#STATE}). */
    static final String SAVED_MEMORY = "vmm-memory";
    /**
     * What a jailed restore names the snapshot's files it loads, in the jail: links to the snapshot's own files, so
     * never the names a save of the restored machine writes ({@link Snapshot#STATE}, {@link #SAVED_MEMORY}).
     */
    private static final String LOADED = "loaded-";
    /** The agent's vsock socket, relative to Firecracker's working directory (see the class comment). */
    static final String AGENT_VSOCK = "vsock.sock";
    /** Loading a snapshot maps its memory, but a jailed restore may first copy it into the jail: bounded by the disk. */
    private static final Duration RESTORE_LIMIT = Duration.ofMinutes(10);
    /** How long a resume after a snapshot waits for the agent's new connection (a running agent answers in milliseconds). */
    private static final Duration AGENT_RECONNECT = Duration.ofSeconds(10);
    /** The release from which Kiln counts on {@code network_overrides} in a snapshot load (1.14 takes it; 1.7 refuses it). */
    private static final int[] NETWORK_OVERRIDES_SINCE = {1, 14};
    /** Firecracker's JSON parser, refusing a field it does not know, lists those it takes: {@code expected one of `a`, `b`}. */
    private static final Pattern EXPECTED_FIELDS = Pattern.compile("expected one of ((?:`\\w+`(?:, )?)+)");
    private static final Pattern LOAD_ERROR = Pattern.compile("Message: (Load snapshot error: [^\\n]*)");

    private final MachineSpec spec;
    final FirecrackerOptions options;
    private volatile String id;
    private volatile Launch launch;
    private volatile Path workDir;
    private volatile Jail jail;
    private volatile Path apiSocket;
    private volatile FifoReader logFifo;
    private volatile FifoReader metricsFifo;
    final LinkedBlockingQueue<String> metricsLines = new LinkedBlockingQueue<>();
    private volatile List<String> commandLine = List.of();
    private volatile VmmProcess process;
    private volatile FirecrackerApi api;
    private volatile MemoryMonitor memoryMonitor;
    private volatile QgaGuest guest;
    private volatile boolean guestBooted;
    /** The agent's connection, so that a save can close it (see {@link #saveState}); null before the first. */
    private volatile SocketChannel agentChannel;
    /** A save closed the agent's connection: the next resume makes a new one. */
    private volatile boolean agentReconnect;
    /** The version the running Firecracker reports; null before it answers. */
    private volatile String runningVersion;
    private volatile boolean interceptedSignal;
    /** Whether a signal ending Firecracker is expected (the builder's setting, or because Kiln sent one). */
    private volatile boolean expectKillBySignal;
    private final List<String> checkFailures = new ArrayList<>();
    private FirecrackerMachine machine;

    /** The machine the configuration steps are given. */
    void attach(FirecrackerMachine machine) {
        this.machine = machine;
    }

    FirecrackerDriver(MachineSpec spec, FirecrackerOptions options) {
        this.spec = spec;
        this.options = options;
        this.expectKillBySignal = options.expectKillBySignal;
    }

    // ---- start -------------------------------------------------------------------------------------------

    @Override
    public void preflight() {
        // KVM first: without it, getting the binaries would not help.
        if (spec.bootsGuest() && options.kvmCheck) FirecrackerMachine.requireGuestBootableHost();
        checkBinary(options.binary, "Firecracker", "FIRECRACKER_BIN");
        if (options.jailer != null) checkBinary(options.jailer.binary(), "jailer", "JAILER_BIN");
        spec.name().ifPresent(Jailer::requireJailId);
    }

    private static void checkBinary(String bin, String what, String variable) {
        if (Executables.find(bin).isPresent()) return;
        String where = bin.contains("/") ? "is missing or not executable" : "was not found on PATH (" + Executables.path() + ")";
        throw new LaunchException(what + " binary '" + bin + "' " + where + "; install a release binary and set "
                + variable + " to it", List.of(bin), null, null, null);
    }

    @Override
    public GuestImage defaultImage() {
        return DefaultImage.get(line -> LOG.info("default image: {}", line));
    }

    @Override
    public VmmProcess spawn(Launch launch) throws IOException {
        this.launch = launch;
        this.id = launch.id();
        this.workDir = launch.workDir();
        if (launch.restoreState() != null) checkRestorable(launch.restoreState());
        Path binary = Executables.find(options.binary).orElseThrow().toAbsolutePath();
        FirecrackerCommandLine fc = FirecrackerCommandLine.of(binary.toString()).withId(id)
                .withBootTimer(options.bootTimer).withExtra(options.extraArgs);
        if (options.jailer != null) {
            jail = new Jail(options.jailer, id, binary);
            jail.create();
            jail.noteCgroups();
            fc = fc.withId(null); // the jailer passes its own --id on, and Firecracker refuses a second one
        }
        // Files Firecracker reads or writes: in the work dir, or in the jail (then owned by the jail's user).
        if (options.logFifo) {
            logFifo = FifoReader.create(place("firecracker.log.fifo"), "log", this::onLogLine);
            handOver(logFifo.path());
            fc = fc.withLog(visible(logFifo.path()), options.logLevel.name()).withShowLevel(options.showLevel)
                    .withShowLogOrigin(options.showLogOrigin);
        } else if (options.logLevel != null) {
            fc = fc.withLog(null, options.logLevel.name());
        }
        if (options.metricsFifo) {
            metricsFifo = FifoReader.create(place("firecracker.metrics.fifo"), "metrics", metricsLines::add);
            handOver(metricsFifo.path());
            fc = fc.withMetricsPath(visible(metricsFifo.path()));
        }
        if (options.configFile != null) {
            Path file = place("vm-config.json");
            FullVmConfiguration c = options.configFile;
            // Firecracker's parser requires the drives field even when there are none.
            Files.write(file, ApiJson.mapper().writeValueAsBytes(c.drives() != null ? c : c.withDrives(List.of())));
            handOver(file);
            fc = fc.withConfigFile(visible(file));
        }
        if (options.metadata != null) {
            Path file = place("mmds-metadata.json");
            Files.write(file, ApiJson.mapper().writeValueAsBytes(options.metadata));
            handOver(file);
            fc = fc.withMetadata(visible(file));
        }
        if (options.noApi) {
            fc = fc.withNoApi(true);
        } else if (jail != null) {
            apiSocket = jail.hostPath(JAILED_API_SOCKET);
            fc = fc.withApiSocket(JAILED_API_SOCKET);
        } else {
            apiSocket = options.apiSocket != null ? options.apiSocket.toAbsolutePath() : workDir.resolve("api.sock");
            Files.deleteIfExists(apiSocket); // Firecracker refuses to start when a file is in the way of its socket
            fc = fc.withApiSocket(apiSocket.toString());
        }
        if (apiSocket != null && apiSocket.toString().getBytes(java.nio.charset.StandardCharsets.UTF_8).length > UnixSocket.MAX_PATH_BYTES) {
            throw new KilnException("the API socket's path " + apiSocket + " is longer than the " + UnixSocket.MAX_PATH_BYTES
                    + " bytes a unix socket path may have: use a shorter " + (jail != null ? "chroot base dir or id" : "work dir base or apiSocket"));
        }

        List<Fd> childFds = new ArrayList<>();
        boolean consoleAttached = !(jail != null && options.jailer.daemonize());
        Launch.SocketPair serial = null;
        try {
            if (consoleAttached) {
                serial = launch.socketPair("console");
                launch.console().attach(serial.ours());
                spec.consoleLog().ifPresent(launch.console()::teeTo);
                childFds.add(serial.theirs()); // fd 4: Firecracker's stdin and stdout
            }
            List<String> vmm;
            if (jail == null) {
                vmm = new ArrayList<>(options.commandPrefix);
                vmm.addAll(fc.toList());
            } else {
                vmm = options.jailer.commandLine(id, binary, fc.arguments());
            }
            // A direct Firecracker works in the work dir (see the class comment); a jailed one in the jail's root.
            commandLine = consoleAttached ? withConsoleStdio(vmm, jail == null ? workDir : null) : vmm;
            LOG.debug("{}: launching {}", id, String.join(" ", commandLine));
            boolean forks = jail != null && options.jailer.forks();
            process = launch.spawn(commandLine, null, childFds, jail != null ? jail.onJvmDeathScript() : "", forks);
            return process;
        } finally {
            if (serial != null) serial.theirs().close(); // the child has its own copy now
        }
    }

    private Path place(String name) {
        return jail != null ? jail.root().resolve(name) : workDir.resolve(name);
    }

    /** The path Firecracker is given for a file Kiln placed. */
    private String visible(Path placed) {
        return jail != null ? "/" + jail.root().relativize(placed) : placed.toString();
    }

    private void handOver(Path placed) {
        if (jail != null) jail.handOver(placed);
    }

    /** Runs {@code argv} with fd 4 as its stdin and stdout, in {@code dir} unless it is null. */
    private static List<String> withConsoleStdio(List<String> argv, Path dir) {
        List<String> all = new ArrayList<>(dir == null
                ? List.of("/bin/sh", "-c", "exec <&4 >&4 4>&-; exec \"$@\"", "kiln-firecracker")
                : List.of("/bin/sh", "-c", "cd -- \"$1\" && shift && exec <&4 >&4 4>&- && exec \"$@\"", "kiln-firecracker", dir.toString()));
        all.addAll(argv);
        return all;
    }

    @Override
    public void bringUp(Deadline deadline) throws IOException {
        if (jail != null && options.jailer.forks()) process.adopt(readPidFile(deadline), jail::runsHere);
        if (!options.noApi) awaitApiSocket(deadline);
        if (logFifo != null) awaitRunningMarker(deadline);
        if (!options.noApi) {
            api = FirecrackerApi.overUnixSocket(apiSocket).timeout(options.apiTimeout).vmmState(launch.vmmState());
            String version = api.describeInstance().vmmVersion(); // proves the API answers, not only that the socket exists
            runningVersion = version == null ? null : FirecrackerBinary.normalize(version);
            if (logFifo != null) {
                api.refuse("putLogger", "Kiln reads Firecracker's log from its own FIFO (awaitLogMessage, the failure"
                        + " evidence); a new logger would move the log away from it. Build the machine with logFifo(false)"
                        + " to configure the logger yourself");
            }
        }
        if (options.memoryMonitorThresholdMib >= 0) {
            memoryMonitor = MemoryMonitor.start(process.pid(), this::guestMemoryMib, options.memoryMonitorThresholdMib,
                    options.memoryMonitorInterval, id);
        }
        if (launch.restoreState() != null) {
            restore(launch.restoreState());
            return;
        }
        List<FirecrackerMachine.ConfigStep> steps = new ArrayList<>();
        if (spec.bootsGuest()) steps.add(new FirecrackerMachine.ConfigStep("boot source and machine from " + launch.image().description(), m -> configureGuest()));
        List<Nic.Tap> taps = taps();
        for (int i = 0; i < taps.size(); i++) {
            String iface = ifaceId(i);
            Nic.Tap tap = taps.get(i);
            steps.add(new FirecrackerMachine.ConfigStep("network interface " + iface + " on " + tap.device(),
                    m -> setup().addNetworkInterface(iface, tap.device(), tap.mac(), null, null)));
        }
        for (AttachedDrive d : launch.drives()) {
            steps.add(new FirecrackerMachine.ConfigStep("drive " + d.id() + " on " + d.file(), m -> addDrive(d)));
        }
        if (agentPort() >= 0) steps.add(new FirecrackerMachine.ConfigStep("vsock for the guest agent", m -> addAgentVsock()));
        steps.addAll(options.steps);
        for (FirecrackerMachine.ConfigStep step : steps) {
            try {
                step.action().accept(machine);
            } catch (RuntimeException e) {
                throw new KilnException("configuration step '" + step.name() + "' failed: " + e.getMessage(), e);
            }
        }
        if (spec.bootsGuest() || options.instanceStart) instanceStart();
    }

    /** A drive, in the spec's order (the guest's vda, vdb…), at the path {@link #placeDrive} gives it. */
    private void addDrive(AttachedDrive d) {
        api().putGuestDriveByID(dev.kiln.firecracker.api.model.Drive.of(d.id(), placeDrive(d), false, d.readOnly()));
    }

    /**
     * Puts drive {@code d} where Firecracker finds it by the name a snapshot records, {@code drive-ID.raw} in its
     * working directory, and returns that relative path. Directly, that is the overlay or scratch file Kiln made in
     * the work dir, or a symlink to the user's file. In a jail, a file Kiln made is handed to Firecracker's user; a
     * writable file of the user's must be linked in, never copied, or the guest's writes would be lost.
     */
    private String placeDrive(AttachedDrive d) {
        String name = "drive-" + d.id() + ".raw";
        if (jail != null) {
            if (d.file().startsWith(launch.workDir())) {
                if (!d.readOnly()) jail.handOver(d.file());
                jail.put(d.file(), name, !d.readOnly());
            } else if (d.readOnly()) {
                jail.put(d.file(), name, false);
            } else {
                jail.putShared(d.file(), name, true);
            }
            return name;
        }
        Path placed = workDir.resolve(name);
        try {
            if (!Files.exists(placed, LinkOption.NOFOLLOW_LINKS)) Files.createSymbolicLink(placed, d.file().toAbsolutePath());
            else if (!Files.isSameFile(placed, d.file())) throw new KilnException(placed + " is not drive " + d.id() + "'s file " + d.file());
        } catch (IOException e) {
            throw new KilnException("cannot link drive " + d.id() + "'s file " + d.file() + " into " + workDir + ": " + e.getMessage(), e);
        }
        return name;
    }

    @Override
    public boolean rawDrivesOnly() {
        return true;
    }

    /** The spec's taps, in order: interface {@link #ifaceId}(i) is on the i-th. */
    private List<Nic.Tap> taps() {
        return spec.nics().stream().filter(Nic.Tap.class::isInstance).map(Nic.Tap.class::cast).toList();
    }

    private static String ifaceId(int index) {
        return "eth" + index;
    }

    /** The agent's vsock port: the builder's, else the default image's when the image runs an agent. */
    private int agentPort() {
        if (options.agentPort >= 0) return options.agentPort;
        return spec.bootsGuest() && launch.image().agent() ? IMAGE_AGENT_PORT : -1;
    }

    /** Boot source (the kernel as an ELF vmlinux, extracted once and cached), initrd and machine size from the spec. */
    private void configureGuest() {
        GuestImage image = launch.image();
        if (image.firmwareBoot()) {
            throw new KilnException("Firecracker boots a kernel, with no firmware, and " + image.description()
                    + " is a bootable disk with none of its own: boot it on QEMU, or give the image a kernel");
        }
        Path vmlinux = Vmlinux.cached(image.kernel(), KilnCache.root().resolve("vmlinux"));
        List<String> args = new ArrayList<>(List.of("console=ttyS0", "reboot=k", "panic=1"));
        if (image.agent()) args.addAll(List.of("kiln.agent=vsock", "kiln.agent_port=" + agentPort()));
        if (!image.cmdline().isBlank()) args.add(image.cmdline());
        rootDevice().ifPresent(dev -> args.add("kiln.root=" + dev));
        if (!spec.kernelArgs().isBlank()) args.add(spec.kernelArgs());
        MicrovmSetup.BasicConfig basic = MicrovmSetup.BasicConfig.of(vmlinux, String.join(" ", args))
                .withSize(spec.cpus(), spec.memoryMib()).withCpuTemplate(options.cpuTemplate);
        setup().basicConfig(image.initrd() != null ? basic.withInitrd(image.initrd()) : basic);
    }

    /**
     * The guest's device for the image's root drive. Firecracker gives its disks no serials the guest could find
     * them by, but attaches them in order: the root drive is {@code vda}, {@code vdb}… by its place.
     */
    private Optional<String> rootDevice() {
        if (launch.image().rootDisk() == null) return Optional.empty();
        List<AttachedDrive> drives = launch.drives();
        for (int i = 0; i < drives.size(); i++) {
            if (drives.get(i).id().equals(GuestImage.ROOT_DRIVE)) return Optional.of("/dev/vd" + (char) ('a' + i));
        }
        return Optional.empty();
    }

    /** Fails when the process Kiln spawned ended badly: Firecracker itself, or a jailer that failed before forking it. */
    private void checkSpawned(String before) {
        var st = process.spawnedExit();
        if (st.isPresent() && !(jail != null && options.jailer.forks() && st.get().success())) {
            throw new KilnException((jail != null ? "the jailer" : "Firecracker") + " " + st.get() + " before " + before);
        }
    }

    private void awaitApiSocket(Deadline deadline) {
        long pauseMicros = 500;
        while (true) {
            checkSpawned("Firecracker opened its API socket " + apiSocket);
            if (!process.isAlive()) throw new KilnException("Firecracker exited before it opened its API socket " + apiSocket);
            if (Files.exists(apiSocket)) {
                try (Fd probe = UnixSocket.connect(apiSocket)) {
                    return;
                } catch (KilnException notYet) {
                    // bound but not listening yet
                }
            }
            if (deadline.expired()) {
                throw new KilnException("Firecracker did not open its API socket " + apiSocket + " within " + Text.human(deadline.total()));
            }
            pause(pauseMicros);
            pauseMicros = Math.min(pauseMicros * 2, 20_000);
        }
    }

    private long readPidFile(Deadline deadline) {
        Path file = jail.pidFile();
        long pauseMicros = 1000;
        while (true) {
            try {
                String s = Files.exists(file) ? Files.readString(file).strip() : "";
                if (!s.isEmpty()) return Long.parseLong(s);
            } catch (IOException | NumberFormatException e) {
                // written as we read: try again
            }
            checkSpawned("it wrote Firecracker's pid to " + file);
            if (deadline.expired()) throw new KilnException("the jailer did not write Firecracker's pid to " + file + " within " + Text.human(deadline.total()));
            pause(pauseMicros);
            pauseMicros = Math.min(pauseMicros * 2, 20_000);
        }
    }

    private void awaitRunningMarker(Deadline deadline) {
        if (logFifo.await(Pattern.compile(Pattern.quote(RUNNING_MARKER)), deadline.remaining()) == null) {
            throw new KilnException("Firecracker did not log '" + RUNNING_MARKER + "' within " + Text.human(deadline.total())
                    + " (" + logFifo.describeEnd() + ")");
        }
    }

    private static void pause(long micros) {
        try {
            TimeUnit.MICROSECONDS.sleep(micros);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while starting Firecracker", e);
        }
    }

    private void onLogLine(String line) {
        if (VMM_LOG.isDebugEnabled()) VMM_LOG.debug("[{}] {}", id, line);
    }

    // ---- the guest and the API -------------------------------------------------------------------------

    private void addAgentVsock() {
        setup().addVsock(spec.vsockCid().orElse(DEFAULT_GUEST_CID), AGENT_VSOCK);
        connectAgent();
    }

    /** The agent's client, over the vsock socket Firecracker listens on in its working directory. */
    private void connectAgent() {
        Path hostUds = hostPathOf(AGENT_VSOCK);
        int port = agentPort();
        // A booted guest answers CONNECT within milliseconds; a short dial keeps awaitReady's retries inside its budget.
        guest = new QgaGuest(() -> agentChannel = VsockDialer.dial(hostUds, port, Duration.ofSeconds(2)), () -> launch.console().tail(2000),
                launch.vmmState(), id);
    }

    /** Boots the configured guest and checks that the instance went from "Not started" to "Running". */
    void instanceStart() {
        InstanceState before = api().describeInstance().state();
        if (before != InstanceState.NOT_STARTED) {
            throw new KilnException("machine " + id + " cannot boot its guest: the instance is " + before + ", not Not started");
        }
        api().instanceStart();
        InstanceState after = api().describeInstance().state();
        if (after != InstanceState.RUNNING) {
            throw new KilnException("InstanceStart was accepted but the instance is " + after + ", not Running");
        }
        guestBooted = true;
    }

    FirecrackerApi api() {
        FirecrackerApi a = api;
        if (a == null) {
            throw new KilnException("machine " + id + " has no API connection"
                    + (options.noApi ? " (started with --no-api)" : " (it is not started)"));
        }
        return a;
    }

    MicrovmSetup setup() {
        return new MicrovmSetup(api(), this::resource);
    }

    /** The path Firecracker is given for host file {@code file}: itself, or its jailed path (linked or copied in). */
    String resource(Path file, boolean writable) {
        return jail != null ? jail.put(file, writable) : file.toAbsolutePath().toString();
    }

    /** The host path of a path Firecracker was given: a relative one is in its working directory (see the class comment). */
    Path hostPathOf(String firecrackerPath) {
        if (jail != null) return jail.hostPath(firecrackerPath);
        return workDir != null ? workDir.resolve(firecrackerPath) : Path.of(firecrackerPath);
    }

    Jail jail() {
        return jail;
    }

    Path apiSocket() {
        return apiSocket;
    }

    long pid() {
        return process.pid();
    }

    FifoReader logFifo() {
        return logFifo;
    }

    FifoReader metricsFifo() {
        return metricsFifo;
    }

    boolean interceptedSignal() {
        return interceptedSignal || log().contains(INTERCEPTED_SIGNAL);
    }

    synchronized List<String> checkFailures() {
        return List.copyOf(checkFailures);
    }

    String log() {
        FifoReader f = logFifo;
        return f == null ? "" : f.text();
    }

    private int guestMemoryMib() {
        try {
            Integer mib = api().getMachineConfiguration().memSizeMib();
            return mib == null ? 0 : mib;
        } catch (RuntimeException e) {
            return -1; // the API is gone: the sample is skipped
        }
    }

    @Override
    public List<String> commandLine() {
        return commandLine;
    }

    @Override
    public Guest guest() {
        return guest;
    }

    QgaGuest agent() {
        return guest;
    }

    @Override
    public void pause() {
        api().pause();
    }

    @Override
    public void resume() {
        api().resume();
        QgaGuest g = guest;
        if (agentReconnect && g != null) {
            agentReconnect = false;
            try {
                g.awaitReady(AGENT_RECONNECT);
            } catch (RuntimeException e) {
                LOG.warn("{}: the guest agent did not answer again within {} of the resume after a snapshot: {}", id,
                        Text.human(AGENT_RECONNECT), e.getMessage());
            }
        }
    }

    // ---- snapshots ---------------------------------------------------------------------------------------

    @Override
    public boolean snapshots() {
        return true;
    }

    /**
     * What a saved state depends on besides the spec: Firecracker's version (the running one's once it answered, else
     * the binary's), the CPU template and the host's CPU (the guest's CPUID is in the state), and below 1.14 the taps,
     * which a restore cannot rename there. Whether it ran jailed does not count: it was given the same paths either way.
     */
    @Override
    public Map<String, String> stateInfo() {
        String version = runningVersion != null ? runningVersion : FirecrackerBinary.version(options.binary);
        Map<String, String> info = new TreeMap<>();
        info.put("vmm.version", version);
        info.put("vmm.cpuTemplate", (options.cpuTemplate != null ? options.cpuTemplate : CpuTemplate.None).name());
        info.put("vmm.cpu", HostCpu.model());
        String taps = taps().stream().map(Nic.Tap::device).collect(Collectors.joining(","));
        if (!taps.isEmpty() && !takesNetworkOverrides(version)) info.put("vmm.taps", taps);
        return info;
    }

    /** The MAC of each tap's interface as the spec gives it (null: the guest's kernel picks one), in {@link #taps()} order. */
    @Override
    public List<String> nicMacs() {
        return taps().stream().map(Nic.Tap::mac).toList();
    }

    private static boolean takesNetworkOverrides(String version) {
        return FirecrackerBinary.atLeast(version, NETWORK_OVERRIDES_SINCE[0], NETWORK_OVERRIDES_SINCE[1]);
    }

    /**
     * A full snapshot of the paused machine: its state into {@code file}, its memory into {@value #SAVED_MEMORY} next
     * to it. A jailed Firecracker sees only its jail: it writes both there, and they are moved out after.
     */
    @Override
    public void saveState(Path file, Duration timeout) {
        // A restored machine's template is its snapshot's, checked by the restore (vmm.cpuTemplate).
        if (launch.restoreState() == null) requireRecordedCpuTemplate();
        dropAgentConnection();
        Path state = file.toAbsolutePath(), memory = state.resolveSibling(SAVED_MEMORY);
        SnapshotCreateParams.SnapshotType full = SnapshotCreateParams.SnapshotType.Full;
        if (jail == null) {
            api().withTimeout(timeout).createSnapshot(new SnapshotCreateParams(memory.toString(), state.toString(), full));
            return;
        }
        Path jailedState = jail.hostPath(Snapshot.STATE), jailedMemory = jail.hostPath(SAVED_MEMORY);
        try {
            deleteQuietly(jailedState); // left by a save that failed: written anew, never through an old link
            deleteQuietly(jailedMemory);
            api().withTimeout(timeout).createSnapshot(new SnapshotCreateParams(SAVED_MEMORY, Snapshot.STATE, full));
            moveOutOfJail(jailedState, state);
            moveOutOfJail(jailedMemory, memory);
        } finally {
            deleteQuietly(jailedState);
            deleteQuietly(jailedMemory);
        }
    }

    /**
     * Firecracker resets every vsock connection of the guest at a snapshot (the guest closes them when it runs again),
     * and its documentation asks for none to be open then: the agent's connection is closed before, and made anew when
     * the machine resumes ({@link #resume}); a restore connects on its own.
     */
    private void dropAgentConnection() {
        SocketChannel ch = agentChannel;
        if (guest == null || ch == null) return;
        agentReconnect = true;
        try {
            ch.close();
        } catch (IOException e) {
            LOG.debug("{}: closing the agent's connection before a snapshot: {}", id, e.toString());
        }
    }

    /** A snapshot records the builder's CPU template: one a configuration step set instead would be recorded wrongly. */
    private void requireRecordedCpuTemplate() {
        CpuTemplate recorded = options.cpuTemplate != null ? options.cpuTemplate : CpuTemplate.None;
        CpuTemplate live = api().getMachineConfiguration().cpuTemplate();
        if ((live != null ? live : CpuTemplate.None) != recorded) {
            throw new KilnException("its CPU template is " + live + ", and its snapshot would record the builder's, " + recorded
                    + ": set the template with the builder's cpuTemplate(...), not in a configuration step");
        }
    }

    /** Moves a file Firecracker wrote in the jail to {@code target}, owned like the directory it goes to (not by the jail's user). */
    private static void moveOutOfJail(Path jailed, Path target) {
        try {
            try {
                Files.move(jailed, target, StandardCopyOption.ATOMIC_MOVE);
            } catch (AtomicMoveNotSupportedException otherFileSystem) {
                Files.copy(jailed, target);
                try (FileChannel out = FileChannel.open(target, StandardOpenOption.WRITE)) {
                    out.force(true);
                }
                Files.delete(jailed);
            }
            Path dir = target.getParent();
            Files.setAttribute(target, "unix:uid", Files.getAttribute(dir, "unix:uid"), LinkOption.NOFOLLOW_LINKS);
            Files.setAttribute(target, "unix:gid", Files.getAttribute(dir, "unix:gid"), LinkOption.NOFOLLOW_LINKS);
        } catch (IOException e) {
            throw new KilnException("cannot move " + jailed + " out of the jail to " + target + ": " + e.getMessage(), e);
        }
    }

    /** Fails before anything is made when the snapshot's memory is missing, or the options exclude a load. */
    private void checkRestorable(Path state) {
        String where = "cannot restore the snapshot in " + state.getParent() + ": ";
        Path memory = state.resolveSibling(SAVED_MEMORY);
        if (!Files.isRegularFile(memory)) throw new KilnException(where + "its guest memory " + memory + " is missing");
        if (options.configFile != null) {
            throw new KilnException(where + "Firecracker loads a snapshot only before anything is configured, and"
                    + " configFile(...) configures the microVM as it starts");
        }
    }

    /**
     * Goes on from the saved state instead of configuring and booting: the drives under the names the snapshot
     * recorded, then one load that maps the memory privately and resumes the guest (a Firecracker machine never
     * starts paused), giving each interface the spec's tap where the binary can. Only the logger and metrics (set on
     * the command line) may precede a load, so the builder's configuration steps do not run: the snapshot holds what
     * they configured.
     */
    private void restore(Path state) {
        String where = "cannot restore the snapshot in " + state.getParent() + ": ";
        Path memory = state.resolveSibling(SAVED_MEMORY);
        for (AttachedDrive d : launch.drives()) placeDrive(d);
        Set<String> fields = loadFields();
        String version = runningVersion != null ? runningVersion : FirecrackerBinary.version(options.binary);
        List<Nic.Tap> taps = taps();
        boolean overrides = !taps.isEmpty() && (fields != null ? fields.contains("network_overrides") : takesNetworkOverrides(version));
        if (!taps.isEmpty() && !overrides && takesNetworkOverrides(version)) {
            // The snapshot recorded no taps (vmm.taps) for this release: which ones it would open is not known.
            throw new KilnException(where + "Firecracker " + version + " takes no network_overrides, so the restored"
                    + " machine would not get the spec's taps " + taps.stream().map(Nic.Tap::device).toList());
        }
        List<NetworkOverride> networkOverrides = null;
        if (overrides) {
            networkOverrides = new ArrayList<>();
            for (int i = 0; i < taps.size(); i++) networkOverrides.add(new NetworkOverride(ifaceId(i), taps.get(i).device()));
        }
        String statePath = jail != null ? jail.put(state, LOADED + Snapshot.STATE, false) : state.toAbsolutePath().toString();
        String memoryPath = jail != null ? jail.put(memory, LOADED + SAVED_MEMORY, false) : memory.toAbsolutePath().toString();
        boolean memBackend = fields == null || fields.contains("mem_backend"); // else a release before mem_backend
        SnapshotLoadParams load = new SnapshotLoadParams(null, null, memBackend ? null : memoryPath,
                memBackend ? new MemoryBackend(MemoryBackend.BackendType.File, memoryPath) : null, statePath, true,
                networkOverrides, null, null, null);
        try {
            api().withTimeout(RESTORE_LIMIT).loadSnapshot(load);
        } catch (FirecrackerApiException e) {
            throw new KilnException(where + "Firecracker refused its saved state " + state + ": "
                    + (e.faultMessage() != null ? e.faultMessage() : e.getMessage()), e);
        } catch (RuntimeException e) {
            // Firecracker ends itself when a load fails, and may be gone before its answer is read: its log says why.
            String logged = lastLoadError();
            throw new KilnException(where + (logged != null ? "Firecracker refused its saved state " + state + ": " + logged
                    : e.getMessage()), e);
        }
        guestBooted = true;
        InstanceState after = api().describeInstance().state();
        if (after != InstanceState.RUNNING) {
            throw new KilnException(where + "Firecracker loaded it but the instance is " + after + ", not Running");
        }
        if (agentPort() >= 0) connectAgent();
        if (!options.steps.isEmpty()) LOG.debug("{}: restored from a snapshot; the configuration steps do not run", id);
    }

    /**
     * The fields this Firecracker's snapshot load takes, or null when it does not say. Asked with a body of one field
     * no release has: its JSON parser refuses that before anything is loaded, naming the fields it knows.
     */
    private Set<String> loadFields() {
        try {
            api().request("PUT", "/snapshot/load", JsonNodeFactory.instance.objectNode().put("kiln_probe", true));
        } catch (FirecrackerApiException e) {
            Matcher m = EXPECTED_FIELDS.matcher(String.valueOf(e.faultMessage()));
            if (m.find()) return Set.of(m.group(1).replace("`", "").split(", "));
            LOG.debug("{}: Firecracker does not list the fields of a snapshot load: {}", id, e.getMessage());
        }
        return null;
    }

    /** The reason of the last snapshot load Firecracker logged as refused, or null. */
    private String lastLoadError() {
        Matcher m = LOAD_ERROR.matcher(log());
        String last = null;
        while (m.find()) last = m.group(1);
        return last;
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // in the jail: removed with it
        }
    }

    // ---- stop --------------------------------------------------------------------------------------------

    /**
     * A running guest is asked with {@code SendCtrlAltDel} (the guest reboots, and Firecracker exits on reboot); a
     * Firecracker without one gets SIGTERM and SIGCONT (so that a stopped one acts on it) — unless it is pid 1 of its
     * own pid namespace, where SIGTERM is ignored: then there is nothing to ask and it is killed. Calls under way on
     * the API fail at once, since the machine is going.
     */
    @Override
    public String requestStop(Duration timeout) {
        FirecrackerApi a = api;
        if (a != null) a.close("machine " + id + " is shutting down");
        if (guestBooted && !options.noApi) {
            Duration limit = timeout.compareTo(STOP_CALL) < 0 ? timeout : STOP_CALL;
            try (FirecrackerApi stopper = FirecrackerApi.overUnixSocket(apiSocket).timeout(limit)) {
                if (stopper.describeInstance().state() == InstanceState.RUNNING) {
                    stopper.sendCtrlAltDel();
                    return "SendCtrlAltDel";
                }
            } catch (RuntimeException e) {
                LOG.debug("{}: no SendCtrlAltDel ({}); signalling instead", id, e.getMessage());
            }
        }
        expectKillBySignal = true; // a signal from Kiln is no surprise
        if (jail != null && options.jailer.newPidNs()) return null;
        if (!process.signal(Posix.SIGTERM)) return "nothing (Firecracker had exited)";
        process.signal(Posix.SIGCONT);
        return "SIGTERM";
    }

    @Override
    public void disconnect(String reason) {
        adoptIfForked();
        MemoryMonitor m = memoryMonitor;
        if (m != null) m.stop();
        QgaGuest g = guest;
        if (g != null) g.close(reason);
        FirecrackerApi a = api;
        if (a != null) a.close(reason);
    }

    /**
     * A jailer that forked Firecracker, before Kiln adopted it (the start failed early): adopt it now from the jail's pid
     * file, if it is there and names a process of this jail, so that the kill that follows reaches it.
     */
    private void adoptIfForked() {
        if (jail == null || !options.jailer.forks() || process == null || process.adopted()) return;
        try {
            String s = Files.exists(jail.pidFile()) ? Files.readString(jail.pidFile()).strip() : "";
            if (!s.isEmpty()) process.adopt(Long.parseLong(s), jail::runsHere);
        } catch (IOException | RuntimeException e) {
            LOG.debug("{}: no forked Firecracker to adopt: {}", id, e.toString());
        }
    }

    @Override
    public void drain() {
        FifoReader l = logFifo, mf = metricsFifo;
        if (l != null) l.close();
        if (mf != null) mf.close();
    }

    @Override
    public void removeLeftovers() {
        if (jail != null) jail.cleanup(Duration.ofSeconds(10));
    }

    @Override
    public String extraLog() {
        return log();
    }

    @Override
    public MatchResult awaitExtraLog(Pattern pattern, Duration timeout) {
        FifoReader f = logFifo;
        if (f == null) return null;
        MatchResult m = f.await(pattern, timeout);
        if (m == null) {
            throw new dev.kiln.WaitTimeoutException("/" + pattern.pattern() + "/ in Firecracker's log of " + id
                    + " (" + f.describeEnd() + ")", timeout, f.tail(2000));
        }
        return m;
    }

    @Override
    public OptionalInt reportedExitCode() {
        Matcher m = EXIT_CODE.matcher(log());
        OptionalInt code = OptionalInt.empty();
        while (m.find()) code = OptionalInt.of(Integer.parseInt(m.group(1)));
        return code;
    }

    /** Kiln kills Firecracker with signals of its own: tell the signal check so. */
    void expectSignal() {
        expectKillBySignal = true;
    }

    @Override
    public void checkAfterStop() {
        List<String> failures = runChecks();
        if (!failures.isEmpty()) {
            throw new FirecrackerCheckException("machine " + id + " failed its checks:\n  " + String.join("\n  ", failures));
        }
    }

    private synchronized List<String> runChecks() {
        String log = log();
        interceptedSignal = log.contains(INTERCEPTED_SIGNAL);
        if (interceptedSignal && !expectKillBySignal) {
            LOG.error("Firecracker {} was ended by a signal it intercepted; its log:\n{}", id, log);
            if (options.failOnInterceptedSignal) checkFailures.add("Firecracker logged '" + INTERCEPTED_SIGNAL + "'");
        }
        if (options.maxApiCallDuration != null && logFifo != null) {
            try {
                for (ApiCallDurations.Call c : ApiCallDurations.slowerThan(log, options.maxApiCallDuration)) {
                    checkFailures.add("API call " + c + " exceeded " + Text.human(options.maxApiCallDuration));
                }
            } catch (IllegalStateException e) {
                checkFailures.add("API call durations cannot be checked: " + e.getMessage());
            }
        }
        MemoryMonitor m = memoryMonitor;
        if (m != null) checkFailures.addAll(m.exceedances());
        return List.copyOf(checkFailures);
    }
}
