package dev.kiln.firecracker.api.model;

/** {@code Vm}: the body of {@code PATCH /vm}, pausing or resuming the vCPUs. */
public record Vm(State state) {
    public enum State { Paused, Resumed }
}
