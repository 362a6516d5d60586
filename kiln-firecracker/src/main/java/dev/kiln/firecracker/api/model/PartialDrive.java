package dev.kiln.firecracker.api.model;

/** {@code PartialDrive}: after boot, a drive's new backing file and/or rate limiter. */
public record PartialDrive(String driveId, String pathOnHost, RateLimiter rateLimiter) {}
