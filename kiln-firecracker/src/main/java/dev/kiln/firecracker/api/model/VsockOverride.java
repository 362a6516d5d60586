package dev.kiln.firecracker.api.model;

/** {@code VsockOverride}: on snapshot load, a new host-side socket path for the vsock device. */
public record VsockOverride(String udsPath) {}
