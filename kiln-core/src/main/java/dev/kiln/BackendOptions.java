package dev.kiln;

/**
 * Settings only one backend understands (QEMU's machine type, Firecracker's jailer…), carried by a
 * {@link MachineSpec} and used when the spec starts on that backend; ignored on the other.
 */
public interface BackendOptions {
    Backend backend();
}
