package dev.kiln.firecracker.api.model;

/** {@code MemoryHotplugSizeUpdate}: the size the guest should plug (MiB). */
public record MemoryHotplugSizeUpdate(Long requestedSizeMib) {}
