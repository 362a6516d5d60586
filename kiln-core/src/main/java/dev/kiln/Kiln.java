package dev.kiln;

import dev.kiln.vmm.spi.MachineFactory;

import java.util.EnumMap;
import java.util.Map;
import java.util.ServiceLoader;

/**
 * Starts machines from a {@link MachineSpec} on the backend it names, found on the class path (or module path):
 * {@code kiln-qemu} for QEMU, {@code kiln-firecracker} for Firecracker.
 *
 * <pre>{@code
 * try (Machine vm = Kiln.start(MachineSpec.builder().memoryMib(256).build())) {
 *     System.out.print(vm.guest().exec("uname", "-r").stdoutText());
 * }
 * }</pre>
 */
public final class Kiln {
    private static final Map<Backend, MachineFactory> FACTORIES = load();

    private Kiln() {}

    /** Creates the machine and starts it: spawned, up, and its readiness probes passed. */
    public static Machine start(MachineSpec spec) {
        return create(spec).start();
    }

    /** Creates the machine without starting it (nothing is spawned or written yet). */
    public static Machine create(MachineSpec spec) {
        MachineFactory factory = FACTORIES.get(spec.backend());
        if (factory == null) {
            throw new KilnException("no Kiln backend for " + spec.backend().displayName() + " is on the class path: add "
                    + "the dependency dev.kiln:kiln-" + spec.backend().name().toLowerCase(java.util.Locale.ROOT));
        }
        return factory.create(spec);
    }

    /** Whether a backend's module is present. */
    public static boolean hasBackend(Backend backend) {
        return FACTORIES.containsKey(backend);
    }

    private static Map<Backend, MachineFactory> load() {
        Map<Backend, MachineFactory> found = new EnumMap<>(Backend.class);
        for (MachineFactory f : ServiceLoader.load(MachineFactory.class, Kiln.class.getClassLoader())) {
            found.putIfAbsent(f.backend(), f);
        }
        return found;
    }
}
