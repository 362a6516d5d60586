package dev.kiln;

import java.time.Instant;

/**
 * One transition of a machine's {@link MachineState}, with why it happened.
 *
 * @param from   the state before
 * @param to     the state after
 * @param at     when
 * @param reason what caused it, e.g. "start()", "close()", "QEMU exited by itself: exited with code 0"
 */
public record StateChange(MachineState from, MachineState to, Instant at, String reason) {
    @Override
    public String toString() {
        return from + " → " + to + " (" + reason + ")";
    }
}
