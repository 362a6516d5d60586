package dev.kiln.firecracker;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.Backend;
import dev.kiln.BackendOptions;
import dev.kiln.firecracker.api.model.CpuTemplate;
import dev.kiln.firecracker.api.model.FullVmConfiguration;
import dev.kiln.firecracker.api.model.LoggerConfig;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * What only Firecracker understands in a {@link dev.kiln.MachineSpec}: the binary, the jailer, log and metrics FIFOs,
 * configuration steps, opt-in checks. Made by {@link FirecrackerMachine.Builder} ({@code builder().spec()} gives a
 * spec carrying them); a spec without them gets {@link #DEFAULTS}.
 */
public final class FirecrackerOptions implements BackendOptions {
    /** Firecracker's defaults: {@code $FIRECRACKER_BIN}, else {@code firecracker} on PATH; log and metrics FIFOs on. */
    public static final FirecrackerOptions DEFAULTS = new FirecrackerMachine.Builder().firecrackerOptions();

    final String binary;
    final Jailer jailer;
    final Path apiSocket;
    final boolean logFifo;
    final LoggerConfig.Level logLevel;
    final boolean showLevel;
    final boolean showLogOrigin;
    final boolean metricsFifo;
    final FullVmConfiguration configFile;
    final JsonNode metadata;
    final boolean noApi;
    final boolean bootTimer;
    final List<String> commandPrefix;
    final List<String> extraArgs;
    final List<FirecrackerMachine.ConfigStep> steps;
    final boolean instanceStart;
    final Duration apiTimeout;
    final boolean expectKillBySignal;
    final boolean failOnInterceptedSignal;
    final Duration maxApiCallDuration;
    final int memoryMonitorThresholdMib;
    final Duration memoryMonitorInterval;
    final int agentPort;
    final boolean kvmCheck;
    final CpuTemplate cpuTemplate;

    FirecrackerOptions(String binary, Jailer jailer, Path apiSocket, boolean logFifo, LoggerConfig.Level logLevel,
                       boolean showLevel, boolean showLogOrigin, boolean metricsFifo, FullVmConfiguration configFile,
                       JsonNode metadata, boolean noApi, boolean bootTimer, List<String> commandPrefix,
                       List<String> extraArgs, List<FirecrackerMachine.ConfigStep> steps, boolean instanceStart,
                       Duration apiTimeout, boolean expectKillBySignal, boolean failOnInterceptedSignal,
                       Duration maxApiCallDuration, int memoryMonitorThresholdMib, Duration memoryMonitorInterval,
                       int agentPort, boolean kvmCheck, CpuTemplate cpuTemplate) {
        this.binary = binary;
        this.jailer = jailer;
        this.apiSocket = apiSocket;
        this.logFifo = logFifo;
        this.logLevel = logLevel;
        this.showLevel = showLevel;
        this.showLogOrigin = showLogOrigin;
        this.metricsFifo = metricsFifo;
        this.configFile = configFile;
        this.metadata = metadata;
        this.noApi = noApi;
        this.bootTimer = bootTimer;
        this.commandPrefix = List.copyOf(commandPrefix);
        this.extraArgs = List.copyOf(extraArgs);
        this.steps = List.copyOf(steps);
        this.instanceStart = instanceStart;
        this.apiTimeout = apiTimeout;
        this.expectKillBySignal = expectKillBySignal;
        this.failOnInterceptedSignal = failOnInterceptedSignal;
        this.maxApiCallDuration = maxApiCallDuration;
        this.memoryMonitorThresholdMib = memoryMonitorThresholdMib;
        this.memoryMonitorInterval = memoryMonitorInterval;
        this.agentPort = agentPort;
        this.kvmCheck = kvmCheck;
        this.cpuTemplate = cpuTemplate;
    }

    @Override
    public Backend backend() {
        return Backend.FIRECRACKER;
    }

    /** The Firecracker binary: a path, or a name looked up on PATH. */
    public String binary() { return binary; }

    /** The jailer settings, or null when Firecracker runs directly. */
    public Jailer jailer() { return jailer; }

    @Override
    public String toString() {
        return "FirecrackerOptions[" + binary + (jailer != null ? ", jailed" : "") + (noApi ? ", no API" : "")
                + (steps.isEmpty() ? "" : ", steps " + steps.stream().map(FirecrackerMachine.ConfigStep::name).toList()) + "]";
    }
}
