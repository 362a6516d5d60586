package dev.kiln.firecracker.api.model;

import com.fasterxml.jackson.annotation.JsonProperty;

import java.util.List;

/**
 * {@code FullVmConfiguration}: every resource at once, as {@code GET /vm/config} returns it and as
 * {@code --config-file} takes it. Its top-level keys are kebab-case, unlike the rest of the API.
 */
public record FullVmConfiguration(
        Balloon balloon,
        List<Drive> drives,
        @JsonProperty("boot-source") BootSource bootSource,
        @JsonProperty("cpu-config") CpuConfig cpuConfig,
        LoggerConfig logger,
        @JsonProperty("machine-config") MachineConfiguration machineConfig,
        MetricsConfig metrics,
        @JsonProperty("memory-hotplug") MemoryHotplugConfig memoryHotplug,
        @JsonProperty("mmds-config") MmdsConfig mmdsConfig,
        @JsonProperty("network-interfaces") List<NetworkInterface> networkInterfaces,
        List<Pmem> pmem,
        Vsock vsock,
        EntropyDevice entropy) {

    /** The minimum a config file needs: a kernel and a machine size. */
    public static FullVmConfiguration of(BootSource bootSource, MachineConfiguration machineConfig) {
        return new FullVmConfiguration(null, null, bootSource, null, null, machineConfig, null, null, null, null, null,
                null, null);
    }

    public FullVmConfiguration withDrives(List<Drive> v) {
        return new FullVmConfiguration(balloon, v, bootSource, cpuConfig, logger, machineConfig, metrics, memoryHotplug,
                mmdsConfig, networkInterfaces, pmem, vsock, entropy);
    }

    public FullVmConfiguration withNetworkInterfaces(List<NetworkInterface> v) {
        return new FullVmConfiguration(balloon, drives, bootSource, cpuConfig, logger, machineConfig, metrics,
                memoryHotplug, mmdsConfig, v, pmem, vsock, entropy);
    }

    public FullVmConfiguration withVsock(Vsock v) {
        return new FullVmConfiguration(balloon, drives, bootSource, cpuConfig, logger, machineConfig, metrics,
                memoryHotplug, mmdsConfig, networkInterfaces, pmem, v, entropy);
    }
}
