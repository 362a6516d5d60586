package dev.kiln.firecracker.api.model;

/** {@code FirecrackerVersion}: the answer of {@code GET /version}, e.g. {@code 1.14.2}. */
public record FirecrackerVersion(String firecrackerVersion) {}
