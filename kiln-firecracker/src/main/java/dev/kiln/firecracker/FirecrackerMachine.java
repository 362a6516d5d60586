package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.AbnormalShutdownException;
import dev.kiln.Console;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.WaitTimeoutException;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineState;
import dev.kiln.agent.QgaGuest;
import dev.kiln.image.Vmlinux;
import dev.kiln.Text;
import dev.kiln.firecracker.api.ApiJson;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.net.NetworkNamespace;
import dev.kiln.os.ExitStatus;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import dev.kiln.support.VmmProcess;
import dev.kiln.support.WorkDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * A Firecracker microVM: the Java counterpart of Firecracker's test {@code Microvm}. Configure with
 * {@link #builder()}, then {@link #start()}; {@link #close()} always leaves nothing behind (process, sockets,
 * FIFOs, work dir, jail and cgroups). Firecracker's whole API is {@link #api()}.
 *
 * <p>{@code start()} spawns Firecracker (directly, or through the {@link Jailer}), waits for its API socket,
 * then runs the configuration steps of the builder in order (each a named step, so a failure names it), and
 * boots the guest with {@code InstanceStart} when the builder asked for it. The VMM dies with the JVM even on
 * SIGKILL (see {@link VmmProcess}).
 *
 * <p>The serial console is Firecracker's stdin and stdout, handed over as one end of a unix socket: that is
 * {@link #console()}. Its log and metrics go to FIFOs that Kiln reads ({@link #log()}, {@link #awaitLogMessage},
 * {@link #flushMetrics()}).
 */
public final class FirecrackerMachine implements Machine {
    /** The vsock port {@link Builder#image} tells the image's agent to listen on. */
    public static final int IMAGE_AGENT_PORT = 1024;
    private static final Logger LOG = LoggerFactory.getLogger(FirecrackerMachine.class);
    private static final Logger VMM_LOG = LoggerFactory.getLogger("dev.kiln.firecracker.vmm");
    private static final AtomicInteger COUNTER = new AtomicInteger();
    /** The line a healthy Firecracker logs first. */
    static final String RUNNING_MARKER = "Running Firecracker";
    /** What Firecracker logs when a signal (SIGHUP, SIGSEGV, SIGSYS…) ends it. */
    public static final String INTERCEPTED_SIGNAL = "Shutting down VM after intercepting signal";
    static final String JAILED_API_SOCKET = "/run/firecracker.socket";

    private final Builder config;
    private final String id;
    private final Console console;
    private volatile MachineState state = MachineState.NEW;
    private Path workDir;
    private Path stderrFile;
    private Jail jail;
    private Path apiSocket;
    private FifoReader logFifo;
    private FifoReader metricsFifo;
    private final LinkedBlockingQueue<String> metricsLines = new LinkedBlockingQueue<>();
    private List<String> commandLine = List.of();
    private VmmProcess process;
    private Fd firecrackerLifeline;
    private volatile long firecrackerPid;
    private FirecrackerApi api;
    private MemoryMonitor memoryMonitor;
    private QgaGuest guest;
    private volatile ExitStatus exitStatus;
    private volatile String finalStderr;
    private volatile boolean interceptedSignal;
    /** Whether a signal ending Firecracker is expected (the builder's setting, or because Kiln sent one). */
    private volatile boolean expectKillBySignal;
    private final List<String> checkFailures = new ArrayList<>();
    private final AtomicBoolean cleanedUp = new AtomicBoolean();
    private final CompletableFuture<Void> cleanupDone = new CompletableFuture<>();
    private final AtomicBoolean checksReported = new AtomicBoolean();

    private FirecrackerMachine(Builder b) {
        this.config = b;
        this.id = b.id != null ? Jailer.requireJailId(b.id) : "kiln-fc-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
        this.console = new Console(id);
        this.expectKillBySignal = b.expectKillBySignal;
    }

    public static Builder builder() {
        return new Builder();
    }

    @Override public String id() { return id; }

    @Override public MachineState state() { return state; }

    /** Firecracker's whole API. Fails before start and once the machine has stopped. */
    public FirecrackerApi api() {
        if (api == null || cleanedUp.get()) {
            throw new KilnException("machine " + id + " has no API connection (state " + state
                    + (config.noApi ? ", started with --no-api" : "") + ")");
        }
        return api;
    }

    /** The command line of the launch: the wrapper Kiln adds, then the jailer or Firecracker and their arguments. */
    public List<String> commandLine() { return commandLine; }

    /** The host path of the API socket (inside the jail when jailed). */
    public Path apiSocket() { return apiSocket; }

    /** The jail, when running under the jailer. */
    public Jail jail() {
        if (jail == null) throw new KilnException("machine " + id + " does not run under the jailer");
        return jail;
    }

    // ---- start -----------------------------------------------------------------------------------

    @Override
    public synchronized FirecrackerMachine start() {
        if (state != MachineState.NEW) {
            throw new KilnException("machine " + id + " was already launched (state " + state + "); create a new one");
        }
        checkBinaries();
        state = MachineState.STARTING;
        Deadline deadline = Deadline.after(config.launchTimeout);
        try {
            spawn(deadline);
            List<ConfigStep> steps = new ArrayList<>();
            if (config.agentPort >= 0) steps.add(new ConfigStep("vsock for the guest agent", m -> m.addAgentVsock()));
            steps.addAll(config.steps);
            for (ConfigStep step : steps) {
                try {
                    step.action().accept(this);
                } catch (RuntimeException e) {
                    throw new KilnException("configuration step '" + step.name() + "' failed: " + e.getMessage(), e);
                }
            }
            if (config.bootGuest) instanceStart();
            state = MachineState.RUNNING;
            process.onExit().thenRun(this::onProcessExit);
            return this;
        } catch (RuntimeException | IOException e) {
            failLaunch(e);
            throw new AssertionError("unreachable");
        }
    }

    private void checkBinaries() {
        checkBinary(config.binary, "Firecracker", "FIRECRACKER_BIN");
        if (config.jailer != null) checkBinary(config.jailer.binary(), "jailer", "JAILER_BIN");
    }

    private static void checkBinary(String bin, String what, String variable) {
        if (Executables.find(bin).isPresent()) return;
        String where = bin.contains("/") ? "is missing or not executable" : "was not found on PATH (" + Executables.path() + ")";
        throw new LaunchException(what + " binary '" + bin + "' " + where + "; install a release binary and set "
                + variable + " to it", List.of(bin), null, null, null);
    }

    private void spawn(Deadline deadline) throws IOException {
        workDir = WorkDir.create(config.baseTempDir, (id.startsWith("kiln-") ? id : "kiln-" + id) + "-");
        stderrFile = workDir.resolve("firecracker.stderr");
        Files.createFile(stderrFile);
        Path binary = Executables.find(config.binary).orElseThrow().toAbsolutePath();
        FirecrackerCommandLine fc = FirecrackerCommandLine.of(binary.toString()).withId(id)
                .withBootTimer(config.bootTimer).withExtra(config.extraArgs);
        if (config.jailer != null) {
            jail = new Jail(config.jailer, id, binary);
            jail.create();
            jail.noteCgroups();
            fc = fc.withId(null); // the jailer passes its own --id on, and Firecracker refuses a second one
        }
        // Files Firecracker reads or writes: in the work dir, or in the jail (then owned by the jail's user).
        if (config.logFifo) {
            logFifo = FifoReader.create(place("firecracker.log.fifo"), "log", this::onLogLine);
            handOver(logFifo.path());
            fc = fc.withLog(visible(logFifo.path()), config.logLevel.name()).withShowLevel(config.showLevel)
                    .withShowLogOrigin(config.showLogOrigin);
        } else if (config.logLevel != null) {
            fc = fc.withLog(null, config.logLevel.name());
        }
        if (config.metricsFifo) {
            metricsFifo = FifoReader.create(place("firecracker.metrics.fifo"), "metrics", metricsLines::add);
            handOver(metricsFifo.path());
            fc = fc.withMetricsPath(visible(metricsFifo.path()));
        }
        if (config.configFile != null) {
            Path file = place("vm-config.json");
            Files.write(file, ApiJson.mapper().writeValueAsBytes(completeForFile(config.configFile)));
            handOver(file);
            fc = fc.withConfigFile(visible(file));
        }
        if (config.metadata != null) {
            Path file = place("mmds-metadata.json");
            Files.write(file, ApiJson.mapper().writeValueAsBytes(config.metadata));
            handOver(file);
            fc = fc.withMetadata(visible(file));
        }
        if (config.noApi) {
            fc = fc.withNoApi(true);
        } else if (jail != null) {
            apiSocket = jail.hostPath(JAILED_API_SOCKET);
            fc = fc.withApiSocket(JAILED_API_SOCKET);
        } else {
            apiSocket = config.apiSocket != null ? config.apiSocket : workDir.resolve("api.sock");
            // Firecracker refuses to start when a file is in the way of its socket.
            Files.deleteIfExists(apiSocket);
            fc = fc.withApiSocket(apiSocket.toString());
        }

        List<Fd> childFds = new ArrayList<>();
        List<Fd> ours = new ArrayList<>();
        try {
            boolean consoleAttached = !(jail != null && config.jailer.daemonize());
            if (consoleAttached) {
                Fd serial = connectConsole();
                ours.add(serial);
                childFds.add(serial); // fd 4: Firecracker's stdin and stdout
            }
            List<String> vmm;
            if (jail == null) {
                vmm = new ArrayList<>(config.commandPrefix);
                vmm.addAll(fc.toList());
            } else {
                List<String> jailerArgv = config.jailer.commandLine(id, binary, fc.arguments());
                if (!config.jailer.forks()) {
                    vmm = jailerArgv;
                } else {
                    Fd[] lifeline = Posix.pipe();
                    ours.add(lifeline[0]);
                    firecrackerLifeline = lifeline[1];
                    childFds.add(lifeline[0]); // fd 5 (4 when there is no console): Firecracker's own lifeline
                    vmm = Keeper.command(jail.pidFile(), consoleAttached, jailerArgv);
                }
            }
            commandLine = consoleAttached && !(jail != null && config.jailer.forks()) ? withConsoleStdio(vmm) : vmm;
            LOG.debug("{}: launching {}", id, String.join(" ", commandLine));
            process = VmmProcess.start(commandLine, workDir, stderrFile, childFds);
        } finally {
            for (Fd fd : ours) fd.close(); // the child has its own copies now
        }

        if (!config.noApi) awaitApiSocket(deadline);
        if (jail != null && config.jailer.forks()) firecrackerPid = readPidFile(deadline);
        else firecrackerPid = process.pid();
        if (logFifo != null) awaitRunningMarker(deadline);
        if (!config.noApi) {
            api = FirecrackerApi.overUnixSocket(apiSocket).timeout(config.apiTimeout);
            api.describeInstance(); // proves the API answers, not only that the socket exists
        }
        if (config.memoryMonitorThresholdMib >= 0) {
            memoryMonitor = MemoryMonitor.start(firecrackerPid, () -> guestMemoryMib(), config.memoryMonitorThresholdMib,
                    config.memoryMonitorInterval, id);
        }
    }

    /** A config file must list drives even when there are none: Firecracker's parser requires the field. */
    private static FullVmConfiguration completeForFile(FullVmConfiguration c) {
        return c.drives() != null ? c : c.withDrives(List.of());
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

    /**
     * Kiln listens on a socket in the work dir and connects to it itself: the connected end goes to
     * Firecracker as its stdin and stdout, the accepted end is the console.
     */
    private Fd connectConsole() throws IOException {
        Path path = workDir.resolve("console.sock");
        try (ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            listener.bind(UnixDomainSocketAddress.of(path));
            Fd serial = UnixSocket.connect(path);
            SocketChannel ours = listener.accept();
            console.attach(ours);
            if (config.consoleLog != null) console.teeTo(config.consoleLog);
            return serial;
        } finally {
            Files.deleteIfExists(path);
        }
    }

    /** Runs {@code argv} with fd 4 as its stdin and stdout. */
    private static List<String> withConsoleStdio(List<String> argv) {
        List<String> all = new ArrayList<>(List.of("/bin/sh", "-c", "exec <&4 >&4 4>&-; exec \"$@\"", "kiln-firecracker"));
        all.addAll(argv);
        return all;
    }

    private void awaitApiSocket(Deadline deadline) {
        long pauseMicros = 500;
        while (true) {
            if (!process.isAlive()) throw new KilnException("Firecracker exited before it opened its API socket " + apiSocket);
            if (Files.exists(apiSocket)) {
                try (Fd probe = UnixSocket.connect(apiSocket)) {
                    return;
                } catch (KilnException notYet) {
                    // bound but not listening yet
                }
            }
            if (deadline.expired()) {
                throw new KilnException("Firecracker did not open its API socket " + apiSocket + " within "
                        + Text.human(deadline.total()));
            }
            sleepMicros(pauseMicros);
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
            if (deadline.expired()) throw new KilnException("the jailer did not write Firecracker's pid to " + file + " within " + Text.human(deadline.total()));
            sleepMicros(pauseMicros);
            pauseMicros = Math.min(pauseMicros * 2, 20_000);
        }
    }

    private void awaitRunningMarker(Deadline deadline) {
        if (logFifo.await(Pattern.compile(Pattern.quote(RUNNING_MARKER)), deadline.remaining()) == null) {
            throw new KilnException("Firecracker did not log '" + RUNNING_MARKER + "' within " + Text.human(deadline.total())
                    + " (" + logFifo.describeEnd() + ")");
        }
    }

    private static void sleepMicros(long micros) {
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

    private void failLaunch(Exception cause) {
        Integer code = null;
        if (process != null) {
            var st = process.process().waitFor(Duration.ofMillis(300)); // a dying Firecracker's last words
            if (st.isEmpty()) hardKill();
            else code = st.get().shellCode();
        }
        cleanup();
        state = MachineState.FAILED;
        throw new LaunchException("Firecracker launch of " + id + " failed: " + cause.getMessage(), commandLine, code,
                vmmLog() + consoleSection(), cause);
    }

    private String consoleSection() {
        String c = console.tail(2000);
        return c.isBlank() ? "" : "\n[serial console]\n" + c;
    }

    // ---- the guest -------------------------------------------------------------------------------

    /** The Firecracker-side path of the agent's vsock socket. */
    private String agentVsockPath() {
        return jail != null ? "/kiln-vsock.sock" : workDir.resolve("vsock.sock").toString();
    }

    private void addAgentVsock() {
        setup().addVsock(config.agentCid, agentVsockPath());
        Path hostUds = hostPathOf(agentVsockPath());
        // A booted guest answers CONNECT within milliseconds; a short dial keeps awaitReady's retries inside its budget.
        guest = new QgaGuest(() -> VsockDialer.dial(hostUds, config.agentPort, Duration.ofSeconds(2)),
                () -> console.tail(2000), id);
    }

    /**
     * Boots the configured guest ({@code PUT /actions InstanceStart}) and checks, like the seed, that the
     * instance went from "Not started" to "Running".
     */
    public void instanceStart() {
        InstanceState before = api().describeInstance().state();
        if (before != InstanceState.NOT_STARTED) {
            throw new KilnException("machine " + id + " cannot boot its guest: the instance is " + before + ", not Not started");
        }
        api().instanceStart();
        InstanceState after = api().describeInstance().state();
        if (after != InstanceState.RUNNING) {
            throw new KilnException("InstanceStart was accepted but the instance is " + after + ", not Running");
        }
        if (state == MachineState.PAUSED) state = MachineState.RUNNING;
    }

    /** The instance state as Firecracker reports it ({@code GET /}). */
    public InstanceState instanceState() {
        return api().describeInstance().state();
    }

    @Override
    public void pause() {
        requireRunning();
        api().pause();
        state = MachineState.PAUSED;
    }

    @Override
    public void resume() {
        requireRunning();
        api().resume();
        state = MachineState.RUNNING;
    }

    private void requireRunning() {
        if (state != MachineState.RUNNING && state != MachineState.PAUSED) {
            throw new KilnException("machine " + id + " is " + state + ", not running");
        }
    }

    /**
     * The seed's configuration shortcuts ({@code basic_config}, drives, interfaces, vsock, snapshot flows),
     * with host files put where Firecracker can see them (into the jail when jailed).
     */
    public MicrovmSetup setup() {
        return new MicrovmSetup(api(), this::resource);
    }

    /** The path Firecracker is given for host file {@code file}: itself, or its jailed path (linked or copied in). */
    public String resource(Path file, boolean writable) {
        return jail != null ? jail.put(file, writable) : file.toAbsolutePath().toString();
    }

    /** Pins Firecracker's threads (VMM, API, vCPUs) to CPUs. */
    public CpuPinning cpuPinning() {
        return new CpuPinning(pid().orElseThrow(() -> new KilnException("machine " + id + " is not running")));
    }

    /** The host path of a path Firecracker was given (e.g. a vsock {@code uds_path}): inside the jail when jailed. */
    public Path hostPathOf(String firecrackerPath) {
        return jail != null ? jail.hostPath(firecrackerPath) : Path.of(firecrackerPath);
    }

    // ---- logs and metrics ------------------------------------------------------------------------

    /** Everything Firecracker logged to its log FIFO so far (the last 16 MiB). */
    public String log() {
        return logFifo == null ? "" : logFifo.text();
    }

    /** Waits until {@code literal} appears anywhere in the log. */
    public MatchResult awaitLogMessage(String literal, Duration timeout) {
        return awaitLogMessage(Pattern.compile(Pattern.quote(literal)), timeout);
    }

    /**
     * Waits until {@code pattern} matches anywhere in the log (the whole log, like the seed's
     * {@code check_log_message}); fails with the log's tail on timeout or when the log ends without it.
     */
    public MatchResult awaitLogMessage(Pattern pattern, Duration timeout) {
        if (logFifo == null) throw new KilnException("machine " + id + " has no log FIFO (logFifo(false))");
        MatchResult m = logFifo.await(pattern, timeout);
        if (m == null) {
            throw new WaitTimeoutException("/" + pattern.pattern() + "/ in Firecracker's log of " + id
                    + " (" + logFifo.describeEnd() + ")", timeout, logFifo.tail(2000));
        }
        return m;
    }

    /**
     * Makes Firecracker write its metrics now and returns them (one JSON object), like the seed's
     * {@code flush_metrics}. Lines Firecracker wrote earlier (it also flushes every 60 s) are dropped first.
     */
    public JsonNode flushMetrics() {
        if (metricsFifo == null) throw new KilnException("machine " + id + " has no metrics FIFO (metricsFifo(false))");
        metricsLines.clear();
        api().flushMetrics();
        try {
            String line = metricsLines.poll(config.apiTimeout.toNanos(), TimeUnit.NANOSECONDS);
            if (line == null) {
                throw new KilnException("Firecracker wrote no metrics line within " + Text.human(config.apiTimeout)
                        + " of FlushMetrics (" + metricsFifo.describeEnd() + ")");
            }
            return ApiJson.mapper().readTree(line);
        } catch (IOException e) {
            throw new KilnException("Firecracker's metrics line is not JSON: " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for metrics", e);
        }
    }

    /** Every metrics line written so far that {@link #flushMetrics()} has not consumed, parsed. */
    public List<JsonNode> drainMetrics() {
        List<String> lines = new ArrayList<>();
        metricsLines.drainTo(lines);
        List<JsonNode> out = new ArrayList<>();
        for (String l : lines) {
            try {
                out.add(ApiJson.mapper().readTree(l));
            } catch (IOException e) {
                throw new KilnException("Firecracker's metrics line is not JSON: " + Text.tail(l, 200), e);
            }
        }
        return out;
    }

    /** True when Firecracker logged that a signal ended it (SIGHUP, SIGSEGV, SIGSYS from seccomp…). */
    public boolean interceptedSignal() {
        return interceptedSignal || log().contains(INTERCEPTED_SIGNAL);
    }

    /** The opt-in checks that failed at shutdown (API call durations, memory overhead, unexpected signal). */
    public synchronized List<String> checkFailures() {
        return List.copyOf(checkFailures);
    }

    private int guestMemoryMib() {
        try {
            Integer mib = api().getMachineConfiguration().memSizeMib();
            return mib == null ? 0 : mib;
        } catch (RuntimeException e) {
            return -1; // the API is gone: the sample is skipped
        }
    }

    // ---- stop ------------------------------------------------------------------------------------

    /**
     * Graceful stop: with a running guest, {@code SendCtrlAltDel} (the guest reboots, and Firecracker exits
     * on reboot); without one, SIGTERM. Then waits up to {@code timeout}, kills if need be, cleans up.
     */
    @Override
    public void shutdown(Duration timeout) {
        if (!launched()) return;
        state = MachineState.STOPPING;
        try {
            softShutdown(timeout);
        } catch (RuntimeException e) {
            hardKill();
            cleanup();
            throw new AbnormalShutdownException("could not shut " + id + " down gracefully: " + e.getMessage(), e);
        }
        cleanup();
        throwCheckFailures();
    }

    private void softShutdown(Duration timeout) {
        if (!isRunning()) return;
        boolean guestRunning = false;
        if (api != null) {
            try {
                guestRunning = api.describeInstance().state() == InstanceState.RUNNING;
            } catch (RuntimeException e) {
                LOG.debug("{}: no answer to GET / before shutdown: {}", id, e.getMessage());
            }
        }
        if (guestRunning) {
            api.sendCtrlAltDel();
        } else {
            expectKillBySignal = true; // a SIGTERM from us is no surprise
            if (!Posix.kill(firecrackerPid, Posix.SIGTERM)) return;
        }
        if (!awaitFirecrackerExit(timeout)) {
            throw new WaitTimeoutException("Firecracker " + id + " to exit after " + (guestRunning ? "SendCtrlAltDel" : "SIGTERM"),
                    timeout, log().isEmpty() ? console.tail(2000) : Text.tail(log(), 2000));
        }
    }

    @Override
    public void kill() {
        if (!launched()) return;
        state = MachineState.STOPPING;
        expectKillBySignal = true;
        hardKill();
        cleanup();
        throwCheckFailures();
    }

    @Override
    public int awaitExit(Duration timeout) {
        if (process == null) throw new KilnException("machine " + id + " was never started");
        if (!awaitFirecrackerExit(timeout)) {
            state = MachineState.STOPPING;
            hardKill();
            cleanup();
            throw new AbnormalShutdownException("machine " + id + " did not exit by itself within " + Text.human(timeout),
                    new WaitTimeoutException("Firecracker " + id + " to exit", timeout, console.tail(2000)));
        }
        if (state != MachineState.EXITED) state = MachineState.STOPPING;
        cleanup(); // or wait for the one the exit started
        throwCheckFailures();
        return exitStatus == null ? -1 : exitStatus.shellCode();
    }

    /** Waits for Firecracker itself (not only the process Kiln spawned, which a forking jailer leaves early). */
    private boolean awaitFirecrackerExit(Duration timeout) {
        Deadline d = Deadline.after(timeout);
        if (process.process().waitFor(timeout).isEmpty()) return false;
        if (firecrackerPid != process.pid()) {
            var handle = ProcessHandle.of(firecrackerPid);
            if (handle.isPresent()) {
                try {
                    handle.get().onExit().get(d.remainingNanos(), TimeUnit.NANOSECONDS);
                } catch (TimeoutException e) {
                    return false;
                } catch (Exception e) {
                    throw new KilnException("waiting for Firecracker pid " + firecrackerPid + " failed: " + e.getMessage(), e);
                }
            }
        }
        return true;
    }

    private void hardKill() {
        if (process == null) return;
        process.kill();
        if (firecrackerPid > 0 && firecrackerPid != process.pid() && ProcessHandle.of(firecrackerPid).isPresent()) {
            Posix.kill(firecrackerPid, Posix.SIGKILL); // a daemonized jailer put it out of our process group
        }
        if (!awaitFirecrackerExit(Duration.ofSeconds(60))) {
            throw new KilnException("Firecracker " + id + " (pid " + firecrackerPid + ") survived SIGKILL for 60 s");
        }
    }

    private boolean launched() {
        return process != null && !cleanedUp.get();
    }

    /** Firecracker exited: by our hand, the guest's, or a crash. Clean up whoever caused it. */
    private void onProcessExit() {
        if (state == MachineState.RUNNING || state == MachineState.PAUSED) {
            Thread.ofVirtual().name("kiln-reap-" + id).start(this::cleanup);
        }
    }

    /**
     * Runs once: closes connections, drains the FIFOs, removes work dir, jail and cgroups, runs the checks.
     * A second caller waits until the first has finished, so that everything is gone when it returns.
     */
    private void cleanup() {
        if (!cleanedUp.compareAndSet(false, true)) {
            try {
                cleanupDone.get(120, TimeUnit.SECONDS);
            } catch (Exception e) {
                LOG.warn("{}: waiting for cleanup failed: {}", id, e.toString());
            }
            return;
        }
        try {
            cleanupOnce();
        } finally {
            cleanupDone.complete(null);
        }
    }

    private void cleanupOnce() {
        if (memoryMonitor != null) memoryMonitor.stop();
        if (guest != null) guest.close();
        if (api != null) api.close();
        if (process != null) {
            if (process.isAlive() || (firecrackerPid != process.pid() && ProcessHandle.of(firecrackerPid).isPresent())) hardKill();
            exitStatus = process.process().waitFor(Duration.ofSeconds(60)).orElse(null);
        }
        console.close();
        if (logFifo != null) logFifo.close();
        if (metricsFifo != null) metricsFifo.close();
        finalStderr = readStderr();
        if (process != null) process.releaseLifeline();
        if (firecrackerLifeline != null) firecrackerLifeline.close();
        try {
            WorkDir.delete(workDir);
            if (jail != null) jail.cleanup(Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            LOG.warn("{}: cleanup left something behind: {}", id, e.getMessage());
        }
        runChecks();
        if (state != MachineState.FAILED && state != MachineState.STARTING) state = MachineState.EXITED;
    }

    private synchronized void runChecks() {
        String log = log();
        interceptedSignal = log.contains(INTERCEPTED_SIGNAL);
        if (interceptedSignal && !expectKillBySignal) {
            LOG.error("Firecracker {} was ended by a signal it intercepted; its log:\n{}", id, log);
            if (config.failOnInterceptedSignal) checkFailures.add("Firecracker logged '" + INTERCEPTED_SIGNAL + "'");
        }
        if (config.maxApiCallDuration != null && logFifo != null) {
            try {
                for (ApiCallDurations.Call c : ApiCallDurations.slowerThan(log, config.maxApiCallDuration)) {
                    checkFailures.add("API call " + c + " exceeded " + Text.human(config.maxApiCallDuration));
                }
            } catch (IllegalStateException e) {
                checkFailures.add("API call durations cannot be checked: " + e.getMessage());
            }
        }
        if (memoryMonitor != null) checkFailures.addAll(memoryMonitor.exceedances());
    }

    /** Reports the failed checks once, to whichever stop call comes first. */
    private void throwCheckFailures() {
        List<String> failures = checkFailures();
        if (!failures.isEmpty() && checksReported.compareAndSet(false, true)) {
            throw new FirecrackerCheckException("machine " + id + " failed its checks:\n  " + String.join("\n  ", failures));
        }
    }

    private String readStderr() {
        try {
            return stderrFile != null && Files.exists(stderrFile) ? Files.readString(stderrFile, StandardCharsets.UTF_8) : "";
        } catch (IOException e) {
            return "(cannot read " + stderrFile + ": " + e.getMessage() + ")";
        }
    }

    @Override
    public boolean isRunning() {
        if (process == null || cleanedUp.get() && exitStatus != null) return false;
        if (process.isAlive()) return true;
        return firecrackerPid != process.pid() && firecrackerPid > 0 && ProcessHandle.of(firecrackerPid).isPresent();
    }

    /**
     * The exit code of the process Kiln spawned: Firecracker itself, or the jailer (which becomes Firecracker
     * unless it forks; with {@code --daemonize} or {@code --new-pid-ns} Firecracker's own code is not observable).
     */
    @Override
    public OptionalInt exitCode() {
        if (exitStatus != null) return OptionalInt.of(exitStatus.shellCode());
        if (process == null) return OptionalInt.empty();
        return process.process().exitStatus().map(s -> OptionalInt.of(s.shellCode())).orElse(OptionalInt.empty());
    }

    public ExitStatus exitStatus() { return exitStatus; }

    /** Firecracker's pid (read from the jail's pid file when the jailer forks). */
    @Override
    public OptionalLong pid() {
        return isRunning() && firecrackerPid > 0 ? OptionalLong.of(firecrackerPid) : OptionalLong.empty();
    }

    @Override public Path workDir() { return workDir; }

    @Override public Console console() { return console; }

    /**
     * The guest agent: qemu-guest-agent reached over vsock ({@link Builder#agentOverVsock}), through
     * Firecracker's {@code CONNECT} handshake. The guest must run the agent on that vsock port.
     */
    @Override
    public Guest guest() {
        if (guest == null) {
            throw new KilnException("machine " + id + " has no guest agent: Guest on Firecracker needs a booted guest that "
                    + "runs qemu-guest-agent on vsock, and the machine built with agentOverVsock(cid, port); use console() or api()");
        }
        return guest;
    }

    /** The agent client, with QGA's raw commands. */
    public QgaGuest agent() {
        return (QgaGuest) guest();
    }

    /** Firecracker's log (from the FIFO) followed by its stderr (where it writes fatal errors). */
    @Override
    public String vmmLog() {
        String stderr = finalStderr != null ? finalStderr : readStderr();
        String log = log();
        if (stderr.isBlank()) return log;
        return log + (log.isEmpty() || log.endsWith("\n") ? "" : "\n") + "[stderr]\n" + stderr;
    }

    @Override
    public void close() {
        if (!launched()) return;
        try {
            shutdown(config.shutdownTimeout);
        } catch (AbnormalShutdownException e) {
            LOG.warn("{}", e.getMessage());
        }
    }

    @Override
    public String toString() {
        return "FirecrackerMachine[" + id + ", " + state + (firecrackerPid > 0 ? ", pid " + firecrackerPid : "") + "]";
    }

    // ---- configuration ---------------------------------------------------------------------------

    /** A named configuration step that {@link #start()} runs after spawning, in order. */
    public record ConfigStep(String name, Consumer<FirecrackerMachine> action) {}

    /** Settings for a {@link FirecrackerMachine}; every one has a sane default. */
    public static final class Builder {
        private String binary = System.getenv().getOrDefault("FIRECRACKER_BIN", "firecracker");
        private Jailer jailer;
        private String id;
        private Path baseTempDir = Path.of(System.getProperty("java.io.tmpdir"));
        private Path apiSocket;
        private boolean logFifo = true;
        private LoggerConfig.Level logLevel = LoggerConfig.Level.Info;
        private boolean showLevel;
        private boolean showLogOrigin;
        private boolean metricsFifo = true;
        private FullVmConfiguration configFile;
        private JsonNode metadata;
        private boolean noApi;
        private boolean bootTimer;
        private boolean bootGuest;
        private final List<String> extraArgs = new ArrayList<>();
        private final List<String> commandPrefix = new ArrayList<>();
        private final List<ConfigStep> steps = new ArrayList<>();
        private Path consoleLog;
        private Duration launchTimeout = Duration.ofSeconds(30);
        private Duration apiTimeout = FirecrackerApi.DEFAULT_TIMEOUT;
        private Duration shutdownTimeout = Duration.ofSeconds(30);
        private boolean expectKillBySignal;
        private boolean failOnInterceptedSignal;
        private Duration maxApiCallDuration;
        private int memoryMonitorThresholdMib = -1;
        private Duration memoryMonitorInterval = Duration.ofMillis(250);
        private int agentCid = 3;
        private int agentPort = -1;

        /** The Firecracker binary; default {@code FIRECRACKER_BIN}, else {@code firecracker} on PATH. */
        public Builder binary(String path) { this.binary = path; return this; }

        /** Runs Firecracker through the jailer (needs root). */
        public Builder jailer(Jailer jailer) { this.jailer = jailer; return this; }

        /** Firecracker's {@code --id} (and the jail's): 1 to 64 letters, digits and '-'. */
        public Builder id(String id) { this.id = Jailer.requireJailId(id); return this; }

        public Builder baseTempDir(Path dir) { this.baseTempDir = dir; return this; }

        /** Where the API socket goes when not jailed (default: the work dir); a stale file there is removed. */
        public Builder apiSocket(Path path) { this.apiSocket = path; return this; }

        /** Whether Firecracker logs to a FIFO that Kiln reads (default on). */
        public Builder logFifo(boolean on) { this.logFifo = on; return this; }

        /** {@code --level} (default Info; the API call duration check needs Debug). */
        public Builder logLevel(LoggerConfig.Level level) { this.logLevel = level; return this; }

        public Builder showLevel(boolean on) { this.showLevel = on; return this; }

        public Builder showLogOrigin(boolean on) { this.showLogOrigin = on; return this; }

        /** Whether Firecracker writes metrics to a FIFO that Kiln reads (default on; see {@link #flushMetrics()}). */
        public Builder metricsFifo(boolean on) { this.metricsFifo = on; return this; }

        /** {@code --config-file}: Firecracker configures (and boots) the microVM from this at start. */
        public Builder configFile(FullVmConfiguration config) { this.configFile = config; return this; }

        /** {@code --metadata}: the MMDS data store's initial contents (a JSON object). */
        public Builder metadata(JsonNode contents) { this.metadata = contents; return this; }

        /** {@code --no-api}: no API socket; needs {@link #configFile}. {@link #api()} is then unavailable. */
        public Builder noApi(boolean on) { this.noApi = on; return this; }

        /** {@code --boot-timer}. */
        public Builder bootTimer(boolean on) { this.bootTimer = on; return this; }

        /** Runs a directly started Firecracker in {@code ns} (a jailed one: {@link Jailer#withNetns}). */
        public Builder netns(NetworkNamespace ns) {
            commandPrefix.clear();
            commandPrefix.addAll(ns.execPrefix());
            return this;
        }

        /** Arguments appended to Firecracker's own. */
        public Builder args(String... more) { extraArgs.addAll(List.of(more)); return this; }

        /** Adds a configuration step, run in order after the API answers (e.g. {@code vm -> vm.basicConfig(...)}). */
        public Builder configure(String name, Consumer<FirecrackerMachine> action) {
            steps.add(new ConfigStep(name, action));
            return this;
        }

        /** Boots the guest ({@code InstanceStart}) after the configuration steps (default off). */
        public Builder bootGuest(boolean on) { this.bootGuest = on; return this; }

        /** Also writes the serial console to a file. */
        public Builder consoleLog(Path file) { this.consoleLog = file; return this; }

        public Builder launchTimeout(Duration d) { this.launchTimeout = d; return this; }

        /** How long one API request may take (default 30 s). */
        public Builder apiTimeout(Duration d) { this.apiTimeout = d; return this; }

        /** How long {@link FirecrackerMachine#close()} waits for a graceful stop before killing. */
        public Builder shutdownTimeout(Duration d) { this.shutdownTimeout = d; return this; }

        /** Says a signal will end Firecracker, so its "intercepting signal" log line is no surprise. */
        public Builder expectKillBySignal(boolean on) { this.expectKillBySignal = on; return this; }

        /** Makes an unexpected "intercepting signal" line fail the shutdown (the seed only logs it). */
        public Builder failOnInterceptedSignal(boolean on) { this.failOnInterceptedSignal = on; return this; }

        /**
         * Opt-in check, at shutdown, that no API call took longer than {@code max} by Firecracker's own
         * account (needs its Debug log, so this sets the level to Debug).
         */
        public Builder checkApiCallDurations(Duration max) {
            this.maxApiCallDuration = max;
            this.logLevel = LoggerConfig.Level.Debug;
            return this;
        }

        /**
         * Opt-in memory monitor: samples Firecracker's RSS every {@code interval} and fails the shutdown when it
         * exceeded the guest's memory by more than {@code thresholdMib}.
         */
        public Builder memoryMonitor(int thresholdMib, Duration interval) {
            if (thresholdMib < 0) throw new IllegalArgumentException("threshold must not be negative: " + thresholdMib);
            this.memoryMonitorThresholdMib = thresholdMib;
            this.memoryMonitorInterval = interval;
            return this;
        }

        /**
         * Adds a vsock device (guest CID {@code guestCid}) and makes {@link FirecrackerMachine#guest()} talk to
         * qemu-guest-agent on vsock port {@code port} of the guest. The image must start the agent there
         * (e.g. {@code qemu-ga -m vsock-listen -p 4294967295:PORT}).
         */
        public Builder agentOverVsock(int guestCid, int port) {
            if (guestCid < 3) throw new IllegalArgumentException("guest CIDs start at 3, got " + guestCid);
            if (port < 0) throw new IllegalArgumentException("vsock port must not be negative: " + port);
            this.agentCid = guestCid;
            this.agentPort = port;
            return this;
        }

        /**
         * Boots a Kiln image the way {@code QemuMachine} does, so that {@code guest().exec} works unchanged:
         * the kernel as an ELF vmlinux (extracted from the bzImage once, cached under {@code ~/.cache/kiln/vmlinux}),
         * the initrd, a vsock device for guest CID 3, and the image's agent on vsock port {@value FirecrackerMachine#IMAGE_AGENT_PORT}
         * ({@code kiln.agent=vsock}: the default image starts qemu-ga there).
         */
        public Builder image(GuestImage image, int vcpus, int memMib) {
            image.validate();
            Path vmlinux = Vmlinux.cached(image.kernel(), Path.of(System.getProperty("user.home"), ".cache", "kiln", "vmlinux"));
            String bootArgs = ("console=ttyS0 reboot=k panic=1 kiln.agent=vsock kiln.agent_port=" + IMAGE_AGENT_PORT + " "
                    + image.cmdline()).strip();
            MicrovmSetup.BasicConfig basic = MicrovmSetup.BasicConfig.of(vmlinux, bootArgs).withSize(vcpus, memMib);
            MicrovmSetup.BasicConfig withInitrd = image.initrd() != null ? basic.withInitrd(image.initrd()) : basic;
            configure("boot source and machine from " + image.description(), m -> m.setup().basicConfig(withInitrd));
            agentOverVsock(3, IMAGE_AGENT_PORT);
            return bootGuest(true);
        }

        public FirecrackerMachine build() {
            if (noApi && configFile == null) throw new IllegalArgumentException("noApi(true) needs configFile(...): without the API there is no other way to configure the microVM");
            if (noApi && (bootGuest || !steps.isEmpty() || agentPort >= 0)) throw new IllegalArgumentException("noApi(true) excludes configuration steps and bootGuest: the config file boots the microVM");
            if (maxApiCallDuration != null && !logFifo) throw new IllegalArgumentException("checkApiCallDurations needs the log FIFO");
            return new FirecrackerMachine(this);
        }

        public FirecrackerMachine start() {
            return build().start();
        }
    }
}
