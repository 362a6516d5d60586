package dev.kiln.firecracker.api.model;

/** {@code InstanceInfo}: what {@code GET /} says about the Firecracker instance. */
public record InstanceInfo(String appName, String id, InstanceState state, String vmmVersion) {}
