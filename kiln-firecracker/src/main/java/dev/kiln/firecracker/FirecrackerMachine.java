package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.Backend;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineSpec;
import dev.kiln.SpecBuilder;
import dev.kiln.Text;
import dev.kiln.agent.QgaGuest;
import dev.kiln.firecracker.api.ApiJson;
import dev.kiln.firecracker.api.FirecrackerApi;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.InstanceState;
import dev.kiln.firecracker.api.model.LoggerConfig;
import dev.kiln.firecracker.net.NetworkNamespace;
import dev.kiln.support.HostKvm;
import dev.kiln.vmm.VmmMachine;

import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * A Firecracker microVM: the Java counterpart of Firecracker's test {@code Microvm}. Configure with {@link #builder()}
 * (or start any {@link MachineSpec} with {@link #create(MachineSpec)}), then {@link #start()}; {@link #close()} always
 * leaves nothing behind (process, sockets, FIFOs, work dir, jail and cgroups). Its life is Kiln's common one
 * ({@link VmmMachine}); Firecracker's whole API is {@link #api()}.
 *
 * <p>{@code start()} spawns Firecracker (directly, or through the {@link Jailer}), waits for its API socket, configures
 * the guest from the spec (boot source, machine size, vsock for the agent, taps), runs the builder's configuration
 * steps in order (each a named step, so a failure names it), and boots the guest with {@code InstanceStart}. With
 * {@code noGuest()} it configures nothing and boots nothing: the API is there to drive by hand.
 *
 * <p>{@code snapshot(dir)} saves a running guest as Firecracker's full snapshot (state and memory files, with copies of
 * the disks it wrote), and {@code startFrom(snapshot)} loads one into a new Firecracker instead of booting; the
 * builder's configuration steps do not run then, since the snapshot holds what they configured. Loading needs real
 * KVM, as booting does.
 */
public final class FirecrackerMachine extends VmmMachine {
    /** The vsock port the default image's agent listens on. */
    public static final int IMAGE_AGENT_PORT = FirecrackerDriver.IMAGE_AGENT_PORT;
    /** What Firecracker logs when a signal (SIGHUP, SIGSEGV, SIGSYS…) ends it. */
    public static final String INTERCEPTED_SIGNAL = FirecrackerDriver.INTERCEPTED_SIGNAL;

    private final FirecrackerDriver firecracker;

    private FirecrackerMachine(MachineSpec spec, FirecrackerDriver driver) {
        super(spec, driver);
        this.firecracker = driver;
        driver.attach(this);
    }

    /** A machine for {@code spec}, not started; the spec must be for Firecracker. */
    public static FirecrackerMachine create(MachineSpec spec) {
        if (spec.backend() != Backend.FIRECRACKER) {
            throw new IllegalArgumentException("backend: the spec is for " + spec.backend().displayName() + ", not Firecracker");
        }
        FirecrackerOptions options = spec.options(FirecrackerOptions.class).orElse(FirecrackerOptions.DEFAULTS);
        return new FirecrackerMachine(spec, new FirecrackerDriver(spec, options));
    }

    public static Builder builder() {
        return new Builder();
    }

    /**
     * Fails, saying why, when this host cannot run a Firecracker guest: that needs real KVM (kvm_intel or kvm_amd;
     * not kvm_pvm, a software nested hypervisor guests crash under).
     */
    public static void requireGuestBootableHost() {
        String why = HostKvm.whyUnusable();
        if (why != null) {
            throw new LaunchException("Firecracker cannot boot a guest on this host: it needs real KVM, and " + why
                    + ". Run on a host with kvm_intel or kvm_amd, or use the QEMU backend (--backend qemu, KILN_BACKEND=qemu)",
                    List.of(), null, null, null);
        }
    }

    @Override
    public FirecrackerMachine start() {
        super.start();
        return this;
    }

    /** Firecracker's whole API. Fails before start, with {@code --no-api}, and once the machine has stopped. */
    public FirecrackerApi api() {
        requireLiveOrStarting();
        return firecracker.api();
    }

    /** The host path of the API socket (inside the jail when jailed). */
    public Path apiSocket() {
        return firecracker.apiSocket();
    }

    /** The jail, when running under the jailer. */
    public Jail jail() {
        Jail j = firecracker.jail();
        if (j == null) throw new KilnException("machine " + id() + " does not run under the jailer");
        return j;
    }

    /** Boots a guest the configuration steps set up ({@code InstanceStart}); checks it went from Not started to Running. */
    public void instanceStart() {
        requireLive("instanceStart()");
        call(() -> {
            firecracker.instanceStart();
            return null;
        });
    }

    /** The instance state as Firecracker reports it ({@code GET /}). */
    public InstanceState instanceState() {
        return api().describeInstance().state();
    }

    /**
     * Configuration shortcuts (machine size and boot source, drives, interfaces, vsock, snapshot flows), with host
     * files put where Firecracker can see them (into the jail when jailed).
     */
    public MicrovmSetup setup() {
        requireLiveOrStarting();
        return firecracker.setup();
    }

    /** The path Firecracker is given for host file {@code file}: itself, or its jailed path (linked or copied in). */
    public String resource(Path file, boolean writable) {
        return firecracker.resource(file, writable);
    }

    /** Pins Firecracker's threads (VMM, API, vCPUs) to CPUs. */
    public CpuPinning cpuPinning() {
        return new CpuPinning(pid().orElseThrow(() -> new KilnException("machine " + id() + " is not running")));
    }

    /**
     * The host path of a path Firecracker was given (e.g. a vsock {@code uds_path}): inside the jail when jailed; a
     * relative one (Kiln's drives {@code drive-ID.raw}, its vsock socket) in the work dir or the jail's root.
     */
    public Path hostPathOf(String firecrackerPath) {
        return firecracker.hostPathOf(firecrackerPath);
    }

    /** The agent client over vsock, with QGA's raw commands. */
    public QgaGuest agent() {
        QgaGuest g = firecracker.agent();
        if (g == null) {
            throw new KilnException("machine " + id() + " has no guest agent: Guest on Firecracker needs a booted guest that"
                    + " runs qemu-guest-agent on vsock (Kiln's image does; otherwise agentOverVsock(port)); use console() or api()");
        }
        return g;
    }

    // ---- logs and metrics ------------------------------------------------------------------------------

    /** Everything Firecracker logged to its log FIFO so far (the last 16 MiB). */
    public String log() {
        return firecracker.log();
    }

    /** Waits until {@code literal} appears anywhere in the log. */
    public MatchResult awaitLogMessage(String literal, Duration timeout) {
        return awaitLogMessage(Pattern.compile(Pattern.quote(literal)), timeout);
    }

    /**
     * Waits until {@code pattern} matches anywhere in the log (the whole log, not only what comes after the call);
     * fails with the log's tail on timeout or when the log ends without it.
     */
    public MatchResult awaitLogMessage(Pattern pattern, Duration timeout) {
        if (firecracker.logFifo() == null) throw new KilnException("machine " + id() + " has no log FIFO (logFifo(false))");
        return awaitVmmLog(pattern, timeout);
    }

    /**
     * Makes Firecracker write its metrics now and returns them (one JSON object).
     * Lines Firecracker wrote earlier (it also flushes every 60 s) are dropped first.
     */
    public JsonNode flushMetrics() {
        FifoReader fifo = firecracker.metricsFifo();
        if (fifo == null) throw new KilnException("machine " + id() + " has no metrics FIFO (metricsFifo(false))");
        firecracker.metricsLines.clear();
        api().flushMetrics();
        Duration wait = firecracker.options.apiTimeout;
        try {
            String line = firecracker.metricsLines.poll(wait.toNanos(), TimeUnit.NANOSECONDS);
            if (line == null) {
                throw new KilnException("Firecracker wrote no metrics line within " + Text.human(wait)
                        + " of FlushMetrics (" + fifo.describeEnd() + ")");
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
        firecracker.metricsLines.drainTo(lines);
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
        return firecracker.interceptedSignal();
    }

    /** The opt-in checks that failed at shutdown (API call durations, memory overhead, unexpected signal). */
    public List<String> checkFailures() {
        return firecracker.checkFailures();
    }

    /** The configuration steps run while the machine starts: the API is theirs then too. */
    private void requireLiveOrStarting() {
        if (state() != dev.kiln.MachineState.STARTING) requireLive("use Firecracker's API");
    }

    /** A named configuration step that {@link #start()} runs after the API answers, in order. */
    public record ConfigStep(String name, Consumer<FirecrackerMachine> action) {
        public ConfigStep {
            Objects.requireNonNull(name, "name");
            Objects.requireNonNull(action, "action");
        }
    }

    /** Settings for a {@link FirecrackerMachine}: the common ones of every backend, and Firecracker's own. */
    public static final class Builder extends SpecBuilder<Builder> {
        private String binary = System.getenv().getOrDefault("FIRECRACKER_BIN", "firecracker");
        private Jailer jailer;
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
        private final List<String> commandPrefix = new ArrayList<>();
        private final List<String> extraArgs = new ArrayList<>();
        private final List<ConfigStep> steps = new ArrayList<>();
        private boolean instanceStart;
        private Duration apiTimeout = FirecrackerApi.DEFAULT_TIMEOUT;
        private boolean expectKillBySignal;
        private boolean failOnInterceptedSignal;
        private Duration maxApiCallDuration;
        private int memoryMonitorThresholdMib = -1;
        private Duration memoryMonitorInterval = Duration.ofMillis(250);
        private int agentPort = -1;
        private boolean kvmCheck = true;
        private CpuTemplate cpuTemplate;

        Builder() {
            backend(Backend.FIRECRACKER);
        }

        /** Takes the spec's settings, and its Firecracker options when it has some. */
        @Override
        public Builder from(MachineSpec spec) {
            super.from(spec);
            backend(Backend.FIRECRACKER);
            spec.options(FirecrackerOptions.class).ifPresent(o -> {
                binary = o.binary;
                jailer = o.jailer;
                apiSocket = o.apiSocket;
                logFifo = o.logFifo;
                logLevel = o.logLevel;
                showLevel = o.showLevel;
                showLogOrigin = o.showLogOrigin;
                metricsFifo = o.metricsFifo;
                configFile = o.configFile;
                metadata = o.metadata;
                noApi = o.noApi;
                bootTimer = o.bootTimer;
                commandPrefix.clear();
                commandPrefix.addAll(o.commandPrefix);
                extraArgs.clear();
                extraArgs.addAll(o.extraArgs);
                steps.clear();
                steps.addAll(o.steps);
                instanceStart = o.instanceStart;
                apiTimeout = o.apiTimeout;
                expectKillBySignal = o.expectKillBySignal;
                failOnInterceptedSignal = o.failOnInterceptedSignal;
                maxApiCallDuration = o.maxApiCallDuration;
                memoryMonitorThresholdMib = o.memoryMonitorThresholdMib;
                memoryMonitorInterval = o.memoryMonitorInterval;
                agentPort = o.agentPort;
                kvmCheck = o.kvmCheck;
                cpuTemplate = o.cpuTemplate;
            });
            return this;
        }

        /** The Firecracker binary; default {@code FIRECRACKER_BIN}, else {@code firecracker} on PATH. */
        public Builder binary(String path) { this.binary = Objects.requireNonNull(path, "binary"); return this; }

        /** Runs Firecracker through the jailer (needs root). */
        public Builder jailer(Jailer jailer) { this.jailer = jailer; return this; }

        /** Same as {@link #name}: Firecracker's {@code --id} (and the jail's). */
        public Builder id(String id) { return name(id); }

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

        /** Adds a configuration step, run in order after the API answers (e.g. {@code vm -> vm.setup().addDrive(...)}). */
        public Builder configure(String name, Consumer<FirecrackerMachine> action) {
            steps.add(new ConfigStep(name, action));
            return this;
        }

        /**
         * With {@code noGuest()}: still boot ({@code InstanceStart}) after the configuration steps, which set up a boot
         * source of their own. A spec with a guest always boots it.
         */
        public Builder instanceStart(boolean on) { this.instanceStart = on; return this; }

        /** How long one API request may take (default 30 s). */
        public Builder apiTimeout(Duration d) { this.apiTimeout = Objects.requireNonNull(d, "apiTimeout"); return this; }

        /** Says a signal will end Firecracker, so its "intercepting signal" log line is no surprise. */
        public Builder expectKillBySignal(boolean on) { this.expectKillBySignal = on; return this; }

        /** Makes an unexpected "intercepting signal" line fail the shutdown (by default it is only logged). */
        public Builder failOnInterceptedSignal(boolean on) { this.failOnInterceptedSignal = on; return this; }

        /**
         * Opt-in check, at shutdown, that no API call took longer than {@code max} by Firecracker's own account (needs its
         * Debug log, so this sets the level to Debug).
         */
        public Builder checkApiCallDurations(Duration max) {
            this.maxApiCallDuration = Objects.requireNonNull(max, "max");
            this.logLevel = LoggerConfig.Level.Debug;
            return this;
        }

        /**
         * Opt-in memory monitor: samples Firecracker's RSS every {@code interval} and fails the shutdown when it exceeded
         * the guest's memory by more than {@code thresholdMib}.
         */
        public Builder memoryMonitor(int thresholdMib, Duration interval) {
            if (thresholdMib < 0) throw new IllegalArgumentException("memoryMonitor: threshold must not be negative: " + thresholdMib);
            this.memoryMonitorThresholdMib = thresholdMib;
            this.memoryMonitorInterval = Objects.requireNonNull(interval, "interval");
            return this;
        }

        /**
         * Makes {@link FirecrackerMachine#guest()} talk to qemu-guest-agent on vsock port {@code port} of the guest (the
         * vsock device has the spec's guest CID, 3 by default). The image must start the agent there (e.g.
         * {@code qemu-ga -m vsock-listen -p 4294967295:PORT}); Kiln's image does, on {@value FirecrackerMachine#IMAGE_AGENT_PORT}.
         */
        public Builder agentOverVsock(int port) {
            if (port < 0) throw new IllegalArgumentException("agentOverVsock: vsock port must not be negative: " + port);
            this.agentPort = port;
            return this;
        }

        /**
         * Whether start() refuses to boot a guest on a host without usable KVM (default on: the guest would die at its
         * first instruction). Off for tests of Firecracker's API around a guest that never runs.
         */
        public Builder kvmCheck(boolean on) { this.kvmCheck = on; return this; }

        /**
         * The static CPU template the guest sees (Firecracker's {@code cpu_template}; default none: the host's CPU as
         * Firecracker filters it). A snapshot records it, and a restore with another template is refused.
         */
        public Builder cpuTemplate(CpuTemplate template) { this.cpuTemplate = template; return this; }

        FirecrackerOptions firecrackerOptions() {
            return new FirecrackerOptions(binary, jailer, apiSocket, logFifo, logLevel, showLevel, showLogOrigin, metricsFifo,
                    configFile, metadata, noApi, bootTimer, commandPrefix, extraArgs, steps, instanceStart, apiTimeout,
                    expectKillBySignal, failOnInterceptedSignal, maxApiCallDuration, memoryMonitorThresholdMib,
                    memoryMonitorInterval, agentPort, kvmCheck, cpuTemplate);
        }

        /** The spec: the common settings and these Firecracker options. */
        @Override
        public MachineSpec spec() {
            if (noApi && configFile == null) {
                throw new IllegalArgumentException("noApi: needs configFile(...); without the API there is no other way to configure the microVM");
            }
            if (noApi && (instanceStart || !steps.isEmpty() || agentPort >= 0)) {
                throw new IllegalArgumentException("noApi: excludes configuration steps, instanceStart and the agent; the config file boots the microVM");
            }
            if (noApi && bootsGuest()) {
                throw new IllegalArgumentException("noApi: the config file describes the guest, so the spec boots none of its own: add noGuest()");
            }
            if (maxApiCallDuration != null && !logFifo) {
                throw new IllegalArgumentException("checkApiCallDurations: needs the log FIFO (logFifo(true))");
            }
            with(firecrackerOptions());
            return super.spec();
        }

        public FirecrackerMachine build() {
            return FirecrackerMachine.create(spec());
        }

        public FirecrackerMachine start() {
            return build().start();
        }
    }
}
