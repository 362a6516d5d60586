package dev.kiln.firecracker.api.model;

/** {@code PartialNetworkInterface}: after boot, an interface's new rate limiters. */
public record PartialNetworkInterface(String ifaceId, RateLimiter rxRateLimiter, RateLimiter txRateLimiter) {}
