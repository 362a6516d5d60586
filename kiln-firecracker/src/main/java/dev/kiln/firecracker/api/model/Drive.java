package dev.kiln.firecracker.api.model;

/**
 * {@code Drive}: a virtio-block device backed by a host file ({@code pathOnHost}), or a vhost-user-block
 * device ({@code socket}). {@code partuuid} only matters for the root device.
 */
public record Drive(String driveId, String partuuid, Boolean isRootDevice, CacheType cacheType, Boolean isReadOnly,
                    String pathOnHost, RateLimiter rateLimiter, IoEngine ioEngine, String socket) {
    public enum CacheType { Unsafe, Writeback }

    public enum IoEngine { Sync, Async }

    /** A virtio-block drive with Firecracker's defaults for the rest. */
    public static Drive of(String driveId, String pathOnHost, boolean isRootDevice, boolean isReadOnly) {
        return new Drive(driveId, null, isRootDevice, null, isReadOnly, pathOnHost, null, null, null);
    }

    public Drive withPartuuid(String v) { return new Drive(driveId, v, isRootDevice, cacheType, isReadOnly, pathOnHost, rateLimiter, ioEngine, socket); }

    public Drive withCacheType(CacheType v) { return new Drive(driveId, partuuid, isRootDevice, v, isReadOnly, pathOnHost, rateLimiter, ioEngine, socket); }

    public Drive withRateLimiter(RateLimiter v) { return new Drive(driveId, partuuid, isRootDevice, cacheType, isReadOnly, pathOnHost, v, ioEngine, socket); }

    public Drive withIoEngine(IoEngine v) { return new Drive(driveId, partuuid, isRootDevice, cacheType, isReadOnly, pathOnHost, rateLimiter, v, socket); }

    public Drive withPathOnHost(String v) { return new Drive(driveId, partuuid, isRootDevice, cacheType, isReadOnly, v, rateLimiter, ioEngine, socket); }
}
