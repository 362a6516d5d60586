package dev.kiln.firecracker.api.model;

/** {@code SerialDevice}: where the serial console's output goes, and an optional rate limit on it. */
public record SerialDevice(String serialOutPath, TokenBucket rateLimiter) {}
