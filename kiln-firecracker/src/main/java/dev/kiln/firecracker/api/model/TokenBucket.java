package dev.kiln.firecracker.api.model;

/** {@code TokenBucket}: {@code size} tokens refilled every {@code refillTime} ms, plus an initial burst. */
public record TokenBucket(Long oneTimeBurst, Long refillTime, Long size) {
    public static TokenBucket of(long size, long refillTimeMs) {
        return new TokenBucket(null, refillTimeMs, size);
    }
}
