package dev.kiln.firecracker.api.model;

/** {@code EntropyDevice}: a virtio-rng device, optionally rate limited. */
public record EntropyDevice(RateLimiter rateLimiter) {}
