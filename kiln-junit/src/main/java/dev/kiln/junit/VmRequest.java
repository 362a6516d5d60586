package dev.kiln.junit;

import dev.kiln.KilnException;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.QemuMachine;
import org.junit.jupiter.api.extension.ExtensionConfigurationException;
import org.junit.platform.commons.support.ReflectionSupport;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.time.Duration;
import java.util.Optional;

/**
 * A machine to start: where it was declared, its {@link Vm} attributes, and the class whose spec methods it may
 * name.
 *
 * @param label      where the machine was declared, for messages and logs
 * @param vm         the annotation
 * @param testClass  the class to look the spec method up in (then its enclosing classes)
 * @param binary     the QEMU binary for machines without a spec, when configured
 */
record VmRequest(String label, Vm vm, Class<?> testClass, Optional<String> binary) {
    private static final Logger LOG = LoggerFactory.getLogger(KilnExtension.class);

    VmRequest {
        if (vm.readyTimeoutSeconds() <= 0) {
            throw new ExtensionConfigurationException(label + ": readyTimeoutSeconds must be positive, got " + vm.readyTimeoutSeconds());
        }
        if (vm.memoryMib() < 0 || vm.cpus() < 0) {
            throw new ExtensionConfigurationException(label + ": memoryMib and cpus must not be negative (0 keeps the builder's)");
        }
    }

    Duration readyTimeout() {
        return Duration.ofSeconds(vm.readyTimeoutSeconds());
    }

    /** The spec's builder (or a fresh one) with the annotation's attributes and, if it has none, the default image. */
    QemuMachine.Builder builder() {
        QemuMachine.Builder b;
        if (vm.spec().isEmpty()) {
            b = QemuMachine.builder();
            binary.ifPresent(b::binary);
        } else {
            b = fromSpec();
        }
        if (!vm.name().isEmpty()) b.name(vm.name());
        if (vm.memoryMib() > 0) b.memoryMib(vm.memoryMib());
        if (vm.cpus() > 0) b.cpus(vm.cpus());
        if (!vm.machine().isEmpty()) b.machine(vm.machine());
        if (!vm.append().isEmpty()) b.append(vm.append());
        if (b.image() == null) {
            try {
                b.image(DefaultImage.get(line -> LOG.info("default image: {}", line)));
            } catch (KilnException e) {
                throw new KilnException(label + ": cannot get the default image: " + e.getMessage(), e);
            }
        }
        return b;
    }

    private QemuMachine.Builder fromSpec() {
        Method method = findSpec();
        String where = method.getDeclaringClass().getSimpleName() + "." + method.getName() + "()";
        if (!Modifier.isStatic(method.getModifiers())) {
            throw new ExtensionConfigurationException(label + ": spec method " + where + " must be static");
        }
        if (!QemuMachine.Builder.class.isAssignableFrom(method.getReturnType())) {
            throw new ExtensionConfigurationException(label + ": spec method " + where + " must return QemuMachine.Builder, not "
                    + method.getReturnType().getName());
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
        return (QemuMachine.Builder) result;
    }

    private Method findSpec() {
        for (Class<?> c = testClass; c != null; c = c.getEnclosingClass()) {
            Optional<Method> m = ReflectionSupport.findMethod(c, vm.spec());
            if (m.isPresent()) return m.get();
        }
        throw new ExtensionConfigurationException(label + ": no method " + vm.spec() + "() in " + testClass.getName()
                + " or a class enclosing it; @Vm(spec = \"" + vm.spec()
                + "\") names a static method without parameters returning QemuMachine.Builder");
    }
}
