package dev.kiln;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * An asynchronous event from the VMM (a QMP event on QEMU).
 *
 * @param name      the event's name, e.g. {@code SHUTDOWN}
 * @param data      its data as plain Java values, immutable all the way down: maps with string keys, lists,
 *                  strings, numbers (integers as {@link Long} or, beyond, {@link BigInteger}; fractions as
 *                  {@link Double} or {@link BigDecimal}), booleans and null; empty when the event has none
 * @param timestamp when the VMM says it happened
 * @param json      the whole message as JSON
 */
public record Event(String name, Map<String, Object> data, Instant timestamp, String json) {
    public Event {
        Objects.requireNonNull(name, "name");
        Objects.requireNonNull(timestamp, "timestamp");
        Objects.requireNonNull(json, "json");
        data = data == null ? Map.of() : copyOfMap(data, "data");
    }

    /** The value under {@code key} in {@link #data()} as text (a string as it is, others by {@code String.valueOf}); null when absent or null. */
    public String text(String key) {
        Object v = data.get(key);
        return v == null ? null : v instanceof String s ? s : String.valueOf(v);
    }

    @Override
    public String toString() {
        return json;
    }

    // Copies, so that the event cannot change under whoever holds it; nulls are JSON's and stay.
    private static Map<String, Object> copyOfMap(Map<?, ?> map, String where) {
        Map<String, Object> copy = new LinkedHashMap<>();
        for (Map.Entry<?, ?> e : map.entrySet()) {
            if (!(e.getKey() instanceof String key)) throw new IllegalArgumentException(where + " has a key that is not a string: " + e.getKey());
            copy.put(key, copyOf(e.getValue(), where + "." + key));
        }
        return Collections.unmodifiableMap(copy);
    }

    private static Object copyOf(Object value, String where) {
        return switch (value) {
            case null -> null;
            case String s -> s;
            case Boolean b -> b;
            case Number n -> n;
            case Map<?, ?> m -> copyOfMap(m, where);
            case List<?> l -> {
                List<Object> copy = new ArrayList<>(l.size());
                for (int i = 0; i < l.size(); i++) copy.add(copyOf(l.get(i), where + "[" + i + "]"));
                yield Collections.unmodifiableList(copy);
            }
            default -> throw new IllegalArgumentException(where + " is not a plain JSON value: " + value.getClass().getName());
        };
    }
}
