package dev.kiln.firecracker.api.model;

/** {@code BalloonStartCmd}: starts a free page hinting run. */
public record BalloonStartCmd(Boolean acknowledgeOnStop) {}
