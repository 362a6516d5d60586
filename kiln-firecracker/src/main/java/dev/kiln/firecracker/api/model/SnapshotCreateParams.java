package dev.kiln.firecracker.api.model;

/** {@code SnapshotCreateParams}: where to write guest memory and VM state; full (default) or diff. */
public record SnapshotCreateParams(String memFilePath, String snapshotPath, SnapshotType snapshotType) {
    public enum SnapshotType { Full, Diff }
}
