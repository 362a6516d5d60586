package dev.kiln.firecracker.api.model;

/** {@code Error}: the body of every Firecracker error answer (but one, see {@code FirecrackerApiException}). */
public record ApiError(String faultMessage) {}
