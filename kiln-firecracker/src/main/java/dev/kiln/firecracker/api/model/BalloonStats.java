package dev.kiln.firecracker.api.model;

/** {@code BalloonStats}: the balloon's statistics as last reported by the guest (the first four always present). */
public record BalloonStats(Long targetPages, Long actualPages, Long targetMib, Long actualMib, Long swapIn, Long swapOut,
                           Long majorFaults, Long minorFaults, Long freeMemory, Long totalMemory, Long availableMemory,
                           Long diskCaches, Long hugetlbAllocations, Long hugetlbFailures, Long oomKill,
                           Long allocStall, Long asyncScan, Long directScan, Long asyncReclaim, Long directReclaim) {}
