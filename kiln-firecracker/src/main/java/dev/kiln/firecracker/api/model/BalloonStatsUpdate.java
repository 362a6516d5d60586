package dev.kiln.firecracker.api.model;

/** {@code BalloonStatsUpdate}: a new statistics polling interval. */
public record BalloonStatsUpdate(Integer statsPollingIntervalS) {}
