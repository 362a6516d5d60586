package dev.kiln.firecracker.api.model;

import java.util.Objects;

/** {@code InstanceActionInfo}: the body of {@code PUT /actions}. */
public record InstanceActionInfo(ActionType actionType) {
    public InstanceActionInfo {
        Objects.requireNonNull(actionType, "actionType");
    }

    public enum ActionType { FlushMetrics, InstanceStart, SendCtrlAltDel }
}
