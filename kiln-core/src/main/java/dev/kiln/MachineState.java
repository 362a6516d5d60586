package dev.kiln;

import java.util.EnumSet;
import java.util.Set;

/**
 * Where a machine is in its life. Every machine moves through these along the arrows of {@link #next()} only:
 * <pre>
 *   NEW ─► STARTING ─► RUNNING ⇄ PAUSED
 *    │        │           │        │
 *    │        ▼           ▼        ▼
 *    │      FAILED     PANICKED ───┤
 *    │                    │        │
 *    │                    ▼        ▼
 *    └──────────────► STOPPING ◄───┘ ─► EXITED
 * </pre>
 * (NEW → EXITED when a machine is closed without being started.)
 */
public enum MachineState {
    /** Configured, not started. */
    NEW,
    /** The VMM is being spawned, connected to, and awaited until the spec's readiness probes pass. */
    STARTING,
    RUNNING,
    PAUSED,
    /** The guest kernel panicked; the VMM runs on until it exits or is stopped. */
    PANICKED,
    /** Stopping: a shutdown, kill, close or cancellation is under way, or the VMM exited and is being cleaned up. */
    STOPPING,
    /** The VMM has exited and everything was cleaned up. */
    EXITED,
    /** Start failed; everything was cleaned up. */
    FAILED;

    /** The states this one may move to. */
    public Set<MachineState> next() {
        return switch (this) {
            case NEW -> EnumSet.of(STARTING, EXITED);
            case STARTING -> EnumSet.of(RUNNING, PAUSED, FAILED);
            case RUNNING -> EnumSet.of(PAUSED, PANICKED, STOPPING);
            case PAUSED -> EnumSet.of(RUNNING, PANICKED, STOPPING);
            case PANICKED -> EnumSet.of(STOPPING);
            case STOPPING -> EnumSet.of(EXITED);
            case EXITED, FAILED -> EnumSet.noneOf(MachineState.class);
        };
    }

    /** RUNNING, PAUSED or PANICKED: the VMM runs and Kiln is not stopping it. */
    public boolean isLive() {
        return this == RUNNING || this == PAUSED || this == PANICKED;
    }

    /** EXITED or FAILED: nothing will happen to the machine any more. */
    public boolean isFinal() {
        return this == EXITED || this == FAILED;
    }
}
