package dev.kiln.firecracker.api.model;

/** {@code Pmem}: a virtio-pmem device backed by a host file. */
public record Pmem(String id, String pathOnHost, Boolean rootDevice, Boolean readOnly, RateLimiter rateLimiter) {}
