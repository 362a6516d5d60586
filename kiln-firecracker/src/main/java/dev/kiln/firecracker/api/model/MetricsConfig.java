package dev.kiln.firecracker.api.model;

import java.util.Map;

/** {@code Metrics}: where Firecracker flushes its JSON metrics (a file or FIFO), one object per line. */
public record MetricsConfig(String metricsPath, Boolean emitId, Map<String, String> properties) {
    public static MetricsConfig of(String metricsPath) {
        return new MetricsConfig(metricsPath, null, null);
    }
}
