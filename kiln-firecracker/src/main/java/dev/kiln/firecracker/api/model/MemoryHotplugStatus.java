package dev.kiln.firecracker.api.model;

/** {@code MemoryHotplugStatus}: sizes of the virtio-mem region, plugged and requested (MiB). */
public record MemoryHotplugStatus(Long totalSizeMib, Long slotSizeMib, Long blockSizeMib, Long pluggedSizeMib,
                                  Long requestedSizeMib) {}
