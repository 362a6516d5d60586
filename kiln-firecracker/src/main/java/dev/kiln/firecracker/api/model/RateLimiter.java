package dev.kiln.firecracker.api.model;

/** {@code RateLimiter}: independent token buckets for bytes ({@code bandwidth}) and operations ({@code ops}). */
public record RateLimiter(TokenBucket bandwidth, TokenBucket ops) {}
