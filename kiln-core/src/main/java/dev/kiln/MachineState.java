package dev.kiln;

/** Where a machine is in its life. Transitions only move forward, except RUNNING ⇄ PAUSED. */
public enum MachineState {
    /** Configured, not started. */
    NEW,
    /** The VMM is being spawned and connected to. */
    STARTING,
    RUNNING,
    PAUSED,
    /**
     * The guest kernel panicked (seen on the console, or reported by the VMM); the VMM runs on until it exits
     * or is stopped, and the state stays PANICKED after that.
     */
    PANICKED,
    /** A shutdown or kill is under way. */
    STOPPING,
    /** The VMM has exited and everything was cleaned up. */
    EXITED,
    /** Start failed; everything was cleaned up. */
    FAILED
}
