package dev.kiln;

import java.time.Duration;
import java.util.Optional;

/**
 * How long a machine's start took, each phase counted from the call to {@code start()}: the VMM spawned, the VMM up
 * (connected, configured, the guest booting), the readiness probes passed. A phase not reached is empty.
 */
public record StartTimings(Duration spawned, Duration vmmUp, Duration ready) {
    public static final StartTimings NONE = new StartTimings(null, null, null);

    public Optional<Duration> spawnedAfter() { return Optional.ofNullable(spawned); }

    public Optional<Duration> vmmUpAfter() { return Optional.ofNullable(vmmUp); }

    public Optional<Duration> readyAfter() { return Optional.ofNullable(ready); }
}
