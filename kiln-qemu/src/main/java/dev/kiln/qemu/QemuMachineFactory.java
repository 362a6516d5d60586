package dev.kiln.qemu;

import dev.kiln.Backend;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.vmm.spi.MachineFactory;

/** QEMU as a backend of {@link dev.kiln.Kiln}. */
public final class QemuMachineFactory implements MachineFactory {
    @Override
    public Backend backend() {
        return Backend.QEMU;
    }

    @Override
    public Machine create(MachineSpec spec) {
        return QemuMachine.create(spec);
    }
}
