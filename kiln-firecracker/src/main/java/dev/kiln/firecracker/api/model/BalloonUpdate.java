package dev.kiln.firecracker.api.model;

/** {@code BalloonUpdate}: a new target size for the balloon. */
public record BalloonUpdate(Integer amountMib) {}
