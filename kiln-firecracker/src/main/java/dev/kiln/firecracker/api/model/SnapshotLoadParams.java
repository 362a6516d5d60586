package dev.kiln.firecracker.api.model;

import com.fasterxml.jackson.annotation.JsonProperty;

import java.util.List;

/**
 * {@code SnapshotLoadParams}: the VM state file and exactly one of {@code memFilePath} (deprecated) or
 * {@code memBackend}; {@code resumeVm} resumes it at once. The overrides need a recent Firecracker.
 */
public record SnapshotLoadParams(Boolean enableDiffSnapshots, Boolean trackDirtyPages, String memFilePath,
                                 MemoryBackend memBackend, String snapshotPath, Boolean resumeVm,
                                 List<NetworkOverride> networkOverrides, VsockOverride vsockOverride,
                                 Boolean clockRealtime, HugePages hugePages) {
    public enum HugePages {
        @JsonProperty("Snapshot") SNAPSHOT,
        @JsonProperty("None") NONE,
        @JsonProperty("Transparent") TRANSPARENT,
        @JsonProperty("2M") HUGETLBFS_2M
    }

    /** Loads memory from a file backend, the form every supported Firecracker accepts. */
    public static SnapshotLoadParams fromFiles(String snapshotPath, String memFilePath, boolean resumeVm) {
        return new SnapshotLoadParams(null, null, null, new MemoryBackend(MemoryBackend.BackendType.File, memFilePath),
                snapshotPath, resumeVm, null, null, null, null);
    }

    public SnapshotLoadParams withTrackDirtyPages(Boolean v) {
        return new SnapshotLoadParams(enableDiffSnapshots, v, memFilePath, memBackend, snapshotPath, resumeVm,
                networkOverrides, vsockOverride, clockRealtime, hugePages);
    }
}
