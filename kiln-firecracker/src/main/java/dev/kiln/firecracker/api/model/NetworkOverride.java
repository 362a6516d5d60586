package dev.kiln.firecracker.api.model;

/** {@code NetworkOverride}: on snapshot load, a new tap device for an interface. */
public record NetworkOverride(String ifaceId, String hostDevName) {}
