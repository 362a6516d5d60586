package dev.kiln.firecracker.api.model;

/** {@code MemoryHotplugConfig}: a virtio-mem device: total hotpluggable size, slot and block sizes (MiB). */
public record MemoryHotplugConfig(Long totalSizeMib, Long slotSizeMib, Long blockSizeMib) {}
