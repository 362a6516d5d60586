package dev.kiln.firecracker.api.model;

/** {@code MemoryBackend}: where a snapshot's guest memory comes from: a file, or a UFFD handler's socket. */
public record MemoryBackend(BackendType backendType, String backendPath) {
    public enum BackendType { File, Uffd }
}
