package dev.kiln.vmm.spi;

import dev.kiln.Backend;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;

/** A backend, as {@link dev.kiln.Kiln} finds it with {@link java.util.ServiceLoader}. */
public interface MachineFactory {
    Backend backend();

    /** A machine for {@code spec}, not started. */
    Machine create(MachineSpec spec);
}
