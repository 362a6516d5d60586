package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Event;

import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Turns a QMP event message, {@code {"event": …, "data": {…}, "timestamp": {"seconds": …, "microseconds": …}}},
 * into an {@link Event} with plain Java values.
 */
final class QmpEventDecoder {
    private QmpEventDecoder() {}

    static Event decode(ObjectNode message) {
        JsonNode ts = message.path("timestamp");
        Instant when = Instant.ofEpochSecond(ts.path("seconds").asLong(), ts.path("microseconds").asLong() * 1000);
        Map<String, Object> data = message.get("data") instanceof ObjectNode o ? object(o) : Map.of();
        return new Event(message.path("event").asText(), data, when, message.toString());
    }

    private static Map<String, Object> object(ObjectNode node) {
        Map<String, Object> map = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> e : node.properties()) map.put(e.getKey(), plain(e.getValue()));
        return map;
    }

    /** JSON to plain Java; integers as Long whatever their size in JSON, so that callers see one type. */
    static Object plain(JsonNode node) {
        return switch (node.getNodeType()) {
            case OBJECT -> object((ObjectNode) node);
            case ARRAY -> {
                List<Object> list = new ArrayList<>(node.size());
                for (JsonNode n : node) list.add(plain(n));
                yield list;
            }
            case STRING -> node.textValue();
            case BOOLEAN -> node.booleanValue();
            case NUMBER -> node.isIntegralNumber() ? (node.canConvertToLong() ? (Object) node.longValue() : node.bigIntegerValue())
                    : node.isBigDecimal() ? node.decimalValue() : (Object) node.doubleValue();
            case NULL, MISSING -> null;
            case BINARY, POJO -> node.toString();
        };
    }
}
