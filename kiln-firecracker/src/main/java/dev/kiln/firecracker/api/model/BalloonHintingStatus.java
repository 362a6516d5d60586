package dev.kiln.firecracker.api.model;

/** {@code BalloonHintingStatus}: the last hinting commands of host and guest. */
public record BalloonHintingStatus(Long hostCmd, Long guestCmd) {}
