package dev.kiln.firecracker;

import dev.kiln.Backend;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.vmm.spi.MachineFactory;

/** Firecracker as a backend of {@link dev.kiln.Kiln}. */
public final class FirecrackerMachineFactory implements MachineFactory {
    @Override
    public Backend backend() {
        return Backend.FIRECRACKER;
    }

    @Override
    public Machine create(MachineSpec spec) {
        return FirecrackerMachine.create(spec);
    }
}
