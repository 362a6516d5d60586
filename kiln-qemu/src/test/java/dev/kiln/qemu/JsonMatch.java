package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.support.JsonFramer;

final class JsonMatch {
    static JsonNode of(String json) {
        try {
            return JsonFramer.JSON.readTree(json);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }
}
