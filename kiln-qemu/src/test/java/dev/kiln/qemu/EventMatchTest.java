package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import dev.kiln.support.JsonFramer;
import org.junit.jupiter.api.Test;

import static org.assertj.core.api.Assertions.assertThat;

/** Every example of the Python harness's event_match docstring, plus the edges. */
class EventMatchTest {
    private static JsonNode j(String json) {
        try {
            return JsonFramer.JSON.readTree(json);
        } catch (Exception e) {
            throw new AssertionError(e);
        }
    }

    @Test
    void nullMatchesAnything() {
        assertThat(EventMatch.matches(j("{\"foo\": 1}"), null)).isTrue();
        assertThat(EventMatch.matches(j("5"), j("null"))).isTrue();
    }

    @Test
    void nullValueMatchesAnyValueUnderThatKey() {
        assertThat(EventMatch.matches(j("{\"foo\": {\"bar\": 1}}"), j("{\"foo\": null}"))).isTrue();
        assertThat(EventMatch.matches(j("{\"foo\": 5}"), j("{\"foo\": null}"))).isTrue();
    }

    @Test
    void missingNestedKeyDoesNotMatch() {
        assertThat(EventMatch.matches(j("{\"foo\": {\"bar\": 1}}"), j("{\"foo\": {\"abc\": null}}"))).isFalse();
    }

    @Test
    void subDictionaryMatchesSuperset() {
        assertThat(EventMatch.matches(j("{\"foo\": {\"bar\": 1, \"rab\": 2}}"), j("{\"foo\": {\"rab\": 2}}"))).isTrue();
    }

    @Test
    void differentValuesDoNotMatch() {
        assertThat(EventMatch.matches(j("{\"foo\": {\"bar\": 1, \"rab\": 2}}"), j("{\"foo\": {\"rab\": 3}}"))).isFalse();
        assertThat(EventMatch.matches(j("{\"foo\": 5}"), j("{\"foo\": {\"a\": 1}}"))).isFalse();
        assertThat(EventMatch.matches(j("{}"), j("{\"foo\": null}"))).isFalse();
    }
}
