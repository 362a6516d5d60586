package dev.kiln.qemu.internal;

import dev.kiln.Backend;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.vmm.spi.MachineFactory;

/** QEMU as a backend of {@link dev.kiln.Kiln}, found by {@link java.util.ServiceLoader}; not part of the API. */
public final class QemuMachineFactory implements MachineFactory {
    public QemuMachineFactory() {}

    @Override
    public Backend backend() {
        return Backend.QEMU;
    }

    @Override
    public Machine create(MachineSpec spec) {
        return QemuMachine.create(spec);
    }
}
