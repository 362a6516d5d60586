package dev.kiln.firecracker.api.model;

import com.fasterxml.jackson.annotation.JsonProperty;

/** {@code InstanceInfo.state}. */
public enum InstanceState {
    @JsonProperty("Not started") NOT_STARTED,
    @JsonProperty("Running") RUNNING,
    @JsonProperty("Paused") PAUSED
}
