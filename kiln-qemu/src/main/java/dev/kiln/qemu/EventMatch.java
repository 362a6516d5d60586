package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;

import java.util.Map;

/**
 * Matching of events against a partial description, as QEMU's Python harness does it: the match is a
 * sub-dictionary; the event must contain every key of it, recursively, with equal values wherever the
 * match's value is not null. A null match, or a JSON null value in it, matches anything.
 */
public final class EventMatch {
    private EventMatch() {}

    public static boolean matches(JsonNode event, JsonNode match) {
        if (match == null || match.isNull()) return true;
        if (match.isObject()) {
            if (event == null || !event.isObject()) return false;
            for (Map.Entry<String, JsonNode> e : match.properties()) {
                if (!event.has(e.getKey())) return false;
                if (!matches(event.get(e.getKey()), e.getValue())) return false;
            }
            return true;
        }
        return match.equals(event);
    }
}
