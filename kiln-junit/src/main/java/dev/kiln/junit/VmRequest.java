package dev.kiln.junit;

import dev.kiln.Backend;
import dev.kiln.KilnException;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.SpecBuilder;
import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.image.DebianImage;
import dev.kiln.qemu.QemuMachine;
import org.junit.jupiter.api.extension.ExtensionConfigurationException;
import org.junit.platform.commons.support.ReflectionSupport;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.time.Duration;
import java.util.Optional;

/**
 * A machine to start: where it was declared, its {@link Vm} attributes, the declared type, and the class whose spec
 * methods it may name.
 *
 * @param label      where the machine was declared, for messages and logs
 * @param vm         the annotation
 * @param type       the declared type: Machine, QemuMachine or FirecrackerMachine
 * @param testClass  the class to look the spec method up in (then its enclosing classes)
 * @param qemuBinary the QEMU binary to run, when configured
 */
record VmRequest(String label, Vm vm, Class<?> type, Class<?> testClass, Optional<String> qemuBinary) {

    VmRequest {
        if (vm.readyTimeoutSeconds() < 0) {
            throw new ExtensionConfigurationException(label + ": readyTimeoutSeconds must not be negative (0 keeps the spec's), got "
                    + vm.readyTimeoutSeconds());
        }
        if (vm.memoryMib() < 0 || vm.cpus() < 0) {
            throw new ExtensionConfigurationException(label + ": memoryMib and cpus must not be negative (0 keeps the spec's)");
        }
    }

    /** The declared types a {@code @Vm} may have. */
    static boolean supports(Class<?> type) {
        return type == Machine.class || type == QemuMachine.class || type == FirecrackerMachine.class;
    }

    /** The machine: the spec method's spec (or the defaults) with the annotation's attributes, on its backend. */
    Machine create() {
        MachineSpec spec = spec();
        return spec.backend() == Backend.QEMU ? QemuMachine.create(spec) : FirecrackerMachine.create(spec);
    }

    MachineSpec spec() {
        MachineSpec base = vm.spec().isEmpty() ? MachineSpec.defaults() : fromSpecMethod();
        Backend backend = backend(base);
        MachineSpec.Builder b = base.toBuilder().backend(backend);
        if (!vm.name().isEmpty()) b.name(vm.name());
        switch (vm.image()) {
            case "" -> {
                if (vm.packages().length > 0) throw new ExtensionConfigurationException(label + ": packages need image = \"debian\"");
            }
            case "debian" -> b.image(DebianImage.builder().packages(vm.packages()).build(System.out::println));
            default -> throw new ExtensionConfigurationException(label + ": image = \"" + vm.image() + "\" is not an image"
                    + " Kiln builds; use \"debian\", or a spec method for any other GuestImage");
        }
        if (vm.memoryMib() > 0) b.memoryMib(vm.memoryMib());
        if (vm.cpus() > 0) b.cpus(vm.cpus());
        if (!vm.append().isEmpty()) b.kernelArgs((base.kernelArgs() + " " + vm.append()).strip());
        if (!vm.awaitReady()) b.readiness();
        if (vm.readyTimeoutSeconds() > 0) b.readyTimeout(Duration.ofSeconds(vm.readyTimeoutSeconds()));
        MachineSpec spec;
        try {
            spec = b.build();
        } catch (IllegalArgumentException e) {
            throw new ExtensionConfigurationException(label + ": " + e.getMessage(), e);
        }
        if (backend == Backend.QEMU && (!vm.machine().isEmpty() || qemuBinary.isPresent())) {
            QemuMachine.Builder q = QemuMachine.builder().from(spec);
            if (!vm.machine().isEmpty()) q.machine(vm.machine());
            if (spec.options(dev.kiln.qemu.QemuOptions.class).isEmpty()) qemuBinary.ifPresent(q::binary);
            spec = q.spec();
        } else if (!vm.machine().isEmpty()) {
            throw new ExtensionConfigurationException(label + ": machine = \"" + vm.machine() + "\" is QEMU's -machine, and this machine runs on "
                    + backend.displayName());
        }
        return spec;
    }

    /** @Vm(backend) when set, else the declared type's, else the spec's; a declared type that cannot hold it is an error. */
    private Backend backend(MachineSpec base) {
        Backend declared = type == QemuMachine.class ? Backend.QEMU : type == FirecrackerMachine.class ? Backend.FIRECRACKER : null;
        Backend backend;
        if (!vm.backend().isEmpty()) {
            try {
                backend = Backend.parse(vm.backend());
            } catch (IllegalArgumentException e) {
                throw new ExtensionConfigurationException(label + ": backend: " + e.getMessage());
            }
        } else {
            backend = declared != null ? declared : base.backend();
        }
        if (declared != null && declared != backend) {
            throw new ExtensionConfigurationException(label + " is declared as " + type.getSimpleName() + " but runs on "
                    + backend.displayName() + ": declare it as dev.kiln.Machine, or drop backend = \"" + vm.backend() + "\"");
        }
        return backend;
    }

    private MachineSpec fromSpecMethod() {
        Method method = findSpec();
        String where = method.getDeclaringClass().getSimpleName() + "." + method.getName() + "()";
        if (!Modifier.isStatic(method.getModifiers())) {
            throw new ExtensionConfigurationException(label + ": spec method " + where + " must be static");
        }
        Class<?> returns = method.getReturnType();
        if (!MachineSpec.class.isAssignableFrom(returns) && !SpecBuilder.class.isAssignableFrom(returns)) {
            throw new ExtensionConfigurationException(label + ": spec method " + where + " must return a MachineSpec or a"
                    + " builder of one (MachineSpec.Builder, QemuMachine.Builder, FirecrackerMachine.Builder), not " + returns.getName());
        }
        Object result;
        try {
            method.setAccessible(true);
            result = method.invoke(null);
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause();
            throw new KilnException(label + ": spec method " + where + " threw " + cause, cause);
        } catch (ReflectiveOperationException | RuntimeException e) {
            throw new ExtensionConfigurationException(label + ": cannot call spec method " + where + ": " + e, e);
        }
        if (result == null) throw new ExtensionConfigurationException(label + ": spec method " + where + " returned null");
        try {
            return result instanceof MachineSpec s ? s : ((SpecBuilder<?>) result).spec();
        } catch (IllegalArgumentException e) {
            throw new ExtensionConfigurationException(label + ": spec method " + where + " gave a bad spec: " + e.getMessage(), e);
        }
    }

    private Method findSpec() {
        for (Class<?> c = testClass; c != null; c = c.getEnclosingClass()) {
            Optional<Method> m = ReflectionSupport.findMethod(c, vm.spec());
            if (m.isPresent()) return m.get();
        }
        throw new ExtensionConfigurationException(label + ": no method " + vm.spec() + "() in " + testClass.getName()
                + " or a class enclosing it; @Vm(spec = \"" + vm.spec()
                + "\") names a static method without parameters returning a MachineSpec or a builder of one");
    }
}
