package dev.kiln.firecracker;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Firecracker's own arguments, immutable: each {@code with*} returns a new command line. Paths are as
 * Firecracker sees them (inside the jail when it runs jailed).
 */
public record FirecrackerCommandLine(String binary, String id, String apiSocket, boolean noApi, String configFile,
                                     String logPath, String level, boolean showLevel, boolean showLogOrigin,
                                     String metricsPath, boolean bootTimer, String metadata, List<String> extra) {
    public FirecrackerCommandLine {
        Objects.requireNonNull(binary, "binary");
        extra = List.copyOf(extra);
        if (noApi && configFile == null) {
            throw new IllegalArgumentException("--no-api needs --config-file: without the API the microVM is configured only from that file");
        }
        if (noApi && apiSocket != null) throw new IllegalArgumentException("--no-api and an API socket exclude each other");
    }

    public static FirecrackerCommandLine of(String binary) {
        return new FirecrackerCommandLine(binary, null, null, false, null, null, null, false, false, null, false, null, List.of());
    }

    public FirecrackerCommandLine withId(String v) { return new FirecrackerCommandLine(binary, v, apiSocket, noApi, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withApiSocket(String v) { return new FirecrackerCommandLine(binary, id, v, noApi, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    /** {@code --no-api}: no API socket at all; the microVM boots from the config file at once. */
    public FirecrackerCommandLine withNoApi(boolean v) { return new FirecrackerCommandLine(binary, id, v ? null : apiSocket, v, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withConfigFile(String v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, v, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withLog(String path, String level) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, path, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withShowLevel(boolean v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, v, showLogOrigin, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withShowLogOrigin(boolean v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, showLevel, v, metricsPath, bootTimer, metadata, extra); }

    public FirecrackerCommandLine withMetricsPath(String v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, showLevel, showLogOrigin, v, bootTimer, metadata, extra); }

    /** {@code --boot-timer}: logs the time from InstanceStart to the guest's first write to the boot timer port. */
    public FirecrackerCommandLine withBootTimer(boolean v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, v, metadata, extra); }

    /** {@code --metadata}: a JSON file that fills the MMDS data store at start. */
    public FirecrackerCommandLine withMetadata(String v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, v, extra); }

    public FirecrackerCommandLine withExtra(List<String> v) { return new FirecrackerCommandLine(binary, id, apiSocket, noApi, configFile, logPath, level, showLevel, showLogOrigin, metricsPath, bootTimer, metadata, v); }

    /** The arguments after the binary, as the jailer passes them on after {@code --}. */
    public List<String> arguments() {
        List<String> a = new ArrayList<>();
        if (id != null) a.addAll(List.of("--id", id));
        if (apiSocket != null) a.addAll(List.of("--api-sock", apiSocket));
        if (noApi) a.add("--no-api");
        if (configFile != null) a.addAll(List.of("--config-file", configFile));
        if (logPath != null) a.addAll(List.of("--log-path", logPath));
        if (level != null) a.addAll(List.of("--level", level));
        if (showLevel) a.add("--show-level");
        if (showLogOrigin) a.add("--show-log-origin");
        if (metricsPath != null) a.addAll(List.of("--metrics-path", metricsPath));
        if (bootTimer) a.add("--boot-timer");
        if (metadata != null) a.addAll(List.of("--metadata", metadata));
        a.addAll(extra);
        return a;
    }

    /** The whole command: binary and arguments. */
    public List<String> toList() {
        List<String> all = new ArrayList<>();
        all.add(binary);
        all.addAll(arguments());
        return all;
    }
}
