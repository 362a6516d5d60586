package dev.kiln.qemu;

import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Event;
import dev.kiln.support.JsonFramer;
import org.junit.jupiter.api.Test;

import java.lang.reflect.RecordComponent;
import java.math.BigInteger;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/**
 * A QMP event message as an {@link Event}: plain Java values, immutable, no Jackson type in the common API.
 * The message shapes here are ones QEMU sends rarely or never (deep nesting, big numbers); QmpTest covers a
 * real QEMU's.
 */
class QmpEventTest {
    private static ObjectNode message(String json) {
        try {
            return (ObjectNode) JsonFramer.JSON.readTree(json);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    private static final String BLOCK_JOB = """
            {"event": "BLOCK_JOB_COMPLETED", "timestamp": {"seconds": 1700000000, "microseconds": 123456},
             "data": {"device": "drive0", "len": 1073741824, "offset": 5, "speed": 0, "ratio": 0.5,
                      "huge": 123456789012345678901234567890, "ok": true, "error": null,
                      "nested": {"list": [1, "two", {"three": 3}, [], null]}}}""";

    @Test
    void dataArePlainJavaValues() {
        Event e = QmpEventDecoder.decode(message(BLOCK_JOB));
        assertThat(e.name()).isEqualTo("BLOCK_JOB_COMPLETED");
        assertThat(e.timestamp()).isEqualTo(Instant.ofEpochSecond(1700000000, 123456000));
        Map<String, Object> d = e.data();
        assertThat(d.get("device")).isEqualTo("drive0");
        // integers are Long whatever their size in JSON, so that a cast does not depend on the value
        assertThat(d.get("len")).isEqualTo(1073741824L);
        assertThat(d.get("offset")).isEqualTo(5L);
        assertThat(d.get("huge")).isEqualTo(new BigInteger("123456789012345678901234567890"));
        assertThat(d.get("ratio")).isEqualTo(0.5);
        assertThat(d.get("ok")).isEqualTo(true);
        assertThat(d).containsKey("error");
        assertThat(d.get("error")).isNull();
        assertThat(d.get("nested")).isEqualTo(Map.of("list", Arrays.asList(1L, "two", Map.of("three", 3L), List.of(), null)));
        assertThat(e.text("device")).isEqualTo("drive0");
        assertThat(e.text("len")).isEqualTo("1073741824");
        assertThat(e.text("absent")).isNull();
        // the whole message, as JSON, for logs and for what the map does not say
        assertThat(e.json()).isEqualTo(message(BLOCK_JOB).toString());
        assertThat(e).hasToString(e.json());
    }

    @Test
    void anEventWithoutDataHasAnEmptyMap() {
        Event e = QmpEventDecoder.decode(message("{\"event\": \"STOP\", \"timestamp\": {\"seconds\": 1, \"microseconds\": 2}}"));
        assertThat(e.data()).isEmpty();
        assertThat(e.timestamp()).isEqualTo(Instant.ofEpochSecond(1, 2000));
    }

    @Test
    @SuppressWarnings("unchecked")
    void dataAreImmutableAllTheWayDown() {
        Event e = QmpEventDecoder.decode(message(BLOCK_JOB));
        assertThatThrownBy(() -> e.data().put("x", 1)).isInstanceOf(UnsupportedOperationException.class);
        var nested = (Map<String, Object>) e.data().get("nested");
        assertThatThrownBy(() -> nested.remove("list")).isInstanceOf(UnsupportedOperationException.class);
        var list = (List<Object>) nested.get("list");
        assertThatThrownBy(() -> list.add(4L)).isInstanceOf(UnsupportedOperationException.class);

        // an event built from a caller's mutable map does not change with it
        Map<String, Object> inner = new HashMap<>();
        inner.put("a", 1L);
        List<Object> items = new ArrayList<>(List.of("x"));
        Map<String, Object> data = new HashMap<>(Map.of("inner", inner, "items", items));
        Event built = new Event("MINE", data, Instant.EPOCH, "{\"event\": \"MINE\"}");
        inner.put("a", 2L);
        items.add("y");
        data.clear();
        assertThat(built.data()).isEqualTo(Map.of("inner", Map.of("a", 1L), "items", List.of("x")));
    }

    @Test
    void onlyPlainValuesGoIn() {
        Map<String, Object> data = Map.of("node", JsonNodeFactory.instance.objectNode());
        assertThatThrownBy(() -> new Event("X", data, Instant.EPOCH, "{}"))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("data.node");
    }

    @Test
    void theCommonApiCarriesNoJacksonType() {
        for (RecordComponent c : Event.class.getRecordComponents()) {
            assertThat(c.getGenericType().getTypeName()).as(c.getName()).doesNotContain("jackson");
        }
    }

    @Test
    void filtersMatchTheWholeMessageOfAnEventTheyAreGiven() {
        Event e = QmpEventDecoder.decode(message(BLOCK_JOB));
        assertThat(new Qmp.EventFilter("BLOCK_JOB_COMPLETED", JsonMatch.of("{\"data\": {\"device\": \"drive0\"}}")).test(e)).isTrue();
        assertThat(new Qmp.EventFilter("BLOCK_JOB_COMPLETED", JsonMatch.of("{\"data\": {\"device\": \"drive1\"}}")).test(e)).isFalse();
        assertThat(new Qmp.EventFilter("BLOCK_JOB_ERROR", null).test(e)).isFalse();
    }
}
