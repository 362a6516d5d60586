package dev.kiln.junit;

import org.junit.jupiter.api.extension.ExtensionContext;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * The machines of one extension context (a class, or a test), kept in that context's store. As an
 * {@link AutoCloseable} store value JUnit closes it with its context, should the after-callback not have run.
 */
final class VmScope implements AutoCloseable {
    private static final ExtensionContext.Namespace NAMESPACE = ExtensionContext.Namespace.create(KilnExtension.class);

    private final List<ManagedVm> vms = new CopyOnWriteArrayList<>();
    /** Machines started ahead for the test method's unnamed {@code @Vm} parameters, by parameter index. */
    private final Map<Integer, ManagedVm> testParameters = new ConcurrentHashMap<>();

    /** The scope of exactly this context. The key is the context's id: a store also answers with its parents' values. */
    static VmScope of(ExtensionContext context) {
        return context.getStore(NAMESPACE).computeIfAbsent(key(context), k -> new VmScope(), VmScope.class);
    }

    private static String key(ExtensionContext context) {
        return "vms:" + context.getUniqueId();
    }

    /** Closes the machines of exactly this context, if it has any; returns the first failure. */
    static RuntimeException closeIn(ExtensionContext context) {
        VmScope s = context.getStore(NAMESPACE).get(key(context), VmScope.class);
        return s == null ? null : s.closeAll();
    }

    /** The machines of a context and of the contexts enclosing it, innermost first. */
    static List<ManagedVm> inScope(ExtensionContext context) {
        List<ManagedVm> all = new ArrayList<>();
        for (ExtensionContext c = context; c != null; c = c.getParent().orElse(null)) {
            VmScope s = c.getStore(NAMESPACE).get(key(c), VmScope.class);
            if (s != null) all.addAll(s.vms);
        }
        return all;
    }

    /** A started machine of that id in the context or an enclosing one. */
    static Optional<ManagedVm> findById(ExtensionContext context, String id) {
        return inScope(context).stream().filter(v -> v.started() && v.machine().id().equals(id)).findFirst();
    }

    void add(ManagedVm vm) { vms.add(vm); }

    void putTestParameter(int index, ManagedVm vm) { testParameters.put(index, vm); }

    Optional<ManagedVm> testParameter(int index) { return Optional.ofNullable(testParameters.get(index)); }

    /** Closes every machine (in parallel); returns the first failure, if any. */
    RuntimeException closeAll() {
        List<ManagedVm> toClose = List.copyOf(vms);
        testParameters.clear();
        return VmStarter.closeAll(toClose);
    }

    @Override
    public void close() {
        RuntimeException e = closeAll();
        if (e != null) throw e;
    }
}
