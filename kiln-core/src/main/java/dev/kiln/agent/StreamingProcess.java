package dev.kiln.agent;

import dev.kiln.GuestException;
import dev.kiln.GuestProcess;
import dev.kiln.support.Deadline;

/** A guest process whose output goes to sinks as it comes: over exec ports, or through the agent's file reads. */
sealed interface StreamingProcess extends GuestProcess permits PortProcess, AgentProcess {
    /** Its exit code once it exited and its output ended; null at the deadline. */
    Integer awaitDone(Deadline deadline);

    /** Whether its command turned out not to exist. */
    boolean wasNotFound();

    GuestException notFoundError();
}
