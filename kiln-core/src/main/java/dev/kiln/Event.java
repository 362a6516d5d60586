package dev.kiln;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.time.Instant;

/**
 * An asynchronous event from the VMM (a QMP event on QEMU).
 *
 * @param name      the event's name, e.g. {@code SHUTDOWN}
 * @param data      its data (an empty object when it has none)
 * @param timestamp when the VMM says it happened
 * @param raw       the whole message as received
 */
public record Event(String name, JsonNode data, Instant timestamp, ObjectNode raw) {
    @Override
    public String toString() {
        return raw.toString();
    }
}
