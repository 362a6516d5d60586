package dev.kiln.firecracker;

import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineSpec;
import dev.kiln.Nic;
import dev.kiln.Text;
import dev.kiln.agent.QgaGuest;
import dev.kiln.firecracker.api.ApiJson;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.image.DefaultImage;
import dev.kiln.image.Vmlinux;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import dev.kiln.support.KilnCache;
import dev.kiln.support.VmmProcess;
import dev.kiln.vmm.spi.AttachedDrive;
import dev.kiln.vmm.spi.Launch;
import dev.kiln.vmm.spi.VmmDriver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.regex.MatchResult;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * How Firecracker plugs into Kiln's machine core: spawned directly or through the jailer, its API socket awaited,
 * its log and metrics read from FIFOs, the guest configured through the API (boot source, machine, vsock for the
 * agent, taps, then the builder's own steps) and booted with {@code InstanceStart}.
 *
 * <p>The serial console is Firecracker's stdin and stdout, one end of a socket pair whose other end is the machine's
 * console. A jailer that forks ({@code --daemonize}, {@code --new-pid-ns}) leaves Firecracker outside Kiln's child:
 * it is adopted by its pid (a pidfd), and the lifeline kills it and removes the jail if the JVM dies.
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
            apiSocket = options.apiSocket != null ? options.apiSocket : workDir.resolve("api.sock");
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
            commandLine = consoleAttached ? withConsoleStdio(vmm) : vmm;
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

    /** Runs {@code argv} with fd 4 as its stdin and stdout. */
    private static List<String> withConsoleStdio(List<String> argv) {
        List<String> all = new ArrayList<>(List.of("/bin/sh", "-c", "exec <&4 >&4 4>&-; exec \"$@\"", "kiln-firecracker"));
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
            api.describeInstance(); // proves the API answers, not only that the socket exists
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
        List<FirecrackerMachine.ConfigStep> steps = new ArrayList<>();
        if (spec.bootsGuest()) steps.add(new FirecrackerMachine.ConfigStep("boot source and machine from " + launch.image().description(), m -> configureGuest()));
        int taps = 0;
        for (Nic n : spec.nics()) {
            if (n instanceof Nic.Tap tap) {
                String iface = "eth" + taps++;
                steps.add(new FirecrackerMachine.ConfigStep("network interface " + iface + " on " + tap.device(),
                        m -> setup().addNetworkInterface(iface, tap.device(), tap.mac(), null, null)));
            }
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

    /**
     * A drive, in the spec's order (the guest's vda, vdb…). In a jail, a file Kiln made is handed to Firecracker's
     * user; a writable file of the user's must be linked in, never copied, or the guest's writes would be lost.
     */
    private void addDrive(AttachedDrive d) {
        String path;
        if (jail == null) path = d.file().toString();
        else if (d.file().startsWith(launch.workDir())) {
            if (!d.readOnly()) jail.handOver(d.file());
            path = jail.put(d.file(), !d.readOnly());
        } else path = d.readOnly() ? jail.put(d.file(), false) : jail.putShared(d.file(), true);
        api().putGuestDriveByID(dev.kiln.firecracker.api.model.Drive.of(d.id(), path, false, d.readOnly()));
    }

    @Override
    public boolean rawDrivesOnly() {
        return true;
    }

    /** The agent's vsock port: the builder's, else the default image's when the image runs an agent. */
    private int agentPort() {
        if (options.agentPort >= 0) return options.agentPort;
        return spec.bootsGuest() && launch.image().agent() ? IMAGE_AGENT_PORT : -1;
    }

    /** Boot source (the kernel as an ELF vmlinux, extracted once and cached), initrd and machine size from the spec. */
    private void configureGuest() {
        GuestImage image = launch.image();
        Path vmlinux = Vmlinux.cached(image.kernel(), KilnCache.root().resolve("vmlinux"));
        List<String> args = new ArrayList<>(List.of("console=ttyS0", "reboot=k", "panic=1"));
        if (image.agent()) args.addAll(List.of("kiln.agent=vsock", "kiln.agent_port=" + agentPort()));
        if (!image.cmdline().isBlank()) args.add(image.cmdline());
        rootDevice().ifPresent(dev -> args.add("kiln.root=" + dev));
        if (!spec.kernelArgs().isBlank()) args.add(spec.kernelArgs());
        MicrovmSetup.BasicConfig basic = MicrovmSetup.BasicConfig.of(vmlinux, String.join(" ", args))
                .withSize(spec.cpus(), spec.memoryMib());
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

    /** The Firecracker-side path of the agent's vsock socket. */
    private String agentVsockPath() {
        return jail != null ? "/kiln-vsock.sock" : workDir.resolve("vsock.sock").toString();
    }

    private void addAgentVsock() {
        setup().addVsock(spec.vsockCid().orElse(DEFAULT_GUEST_CID), agentVsockPath());
        Path hostUds = hostPathOf(agentVsockPath());
        int port = agentPort();
        // A booted guest answers CONNECT within milliseconds; a short dial keeps awaitReady's retries inside its budget.
        guest = new QgaGuest(() -> VsockDialer.dial(hostUds, port, Duration.ofSeconds(2)), () -> launch.console().tail(2000),
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

    Path hostPathOf(String firecrackerPath) {
        return jail != null ? jail.hostPath(firecrackerPath) : Path.of(firecrackerPath);
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
