package dev.kiln.firecracker.api.model;

/** {@code CpuTemplate}: a static CPU template (deprecated by Firecracker in favour of {@link CpuConfig}). */
public enum CpuTemplate { C3, T2, T2S, T2CL, T2A, V1N1, None }
