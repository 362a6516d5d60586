package dev.kiln.firecracker.internal;

import dev.kiln.Backend;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.vmm.spi.MachineFactory;

/** Firecracker as a backend of {@link dev.kiln.Kiln}, found by {@link java.util.ServiceLoader}; not part of the API. */
public final class FirecrackerMachineFactory implements MachineFactory {
    public FirecrackerMachineFactory() {}

    @Override
    public Backend backend() {
        return Backend.FIRECRACKER;
    }

    @Override
    public Machine create(MachineSpec spec) {
        return FirecrackerMachine.create(spec);
    }
}
