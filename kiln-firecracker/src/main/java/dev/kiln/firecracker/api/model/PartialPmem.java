package dev.kiln.firecracker.api.model;

/** {@code PartialPmem}: after boot, a pmem device's new rate limiter. */
public record PartialPmem(String id, RateLimiter rateLimiter) {}
