package dev.kiln.junit;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.AfterEachCallback;
import org.junit.jupiter.api.extension.BeforeAllCallback;
import org.junit.jupiter.api.extension.BeforeEachCallback;
import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionConfigurationException;
import org.junit.jupiter.api.extension.ExtensionContext;
import org.junit.jupiter.api.extension.LifecycleMethodExecutionExceptionHandler;
import org.junit.jupiter.api.extension.ParameterContext;
import org.junit.jupiter.api.extension.ParameterResolutionException;
import org.junit.jupiter.api.extension.ParameterResolver;
import org.junit.jupiter.api.extension.TestExecutionExceptionHandler;
import org.junit.platform.commons.support.AnnotationSupport;
import org.junit.platform.commons.support.HierarchyTraversalMode;
import org.junit.platform.commons.support.ModifierSupport;
import org.opentest4j.IncompleteExecutionException;

import java.lang.reflect.Constructor;
import java.lang.reflect.Executable;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.lang.reflect.Parameter;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Starts, awaits, hands out and closes the machines of {@link Vm @Vm} fields and parameters; skips
 * {@link KilnTest} classes when QEMU is missing; and when a test fails, writes what its machines left behind
 * (console, VMM log, QMP transcript, command line, state transitions) to
 * {@code target/kiln/<class>/<test>/<machine-id>/} and names that directory in a {@link KilnEvidence} suppressed by
 * the failure (which keeps its own type and message).
 *
 * <p>All state lives in the {@link ExtensionContext.Store} of the class or test it belongs to, so tests may run in
 * parallel. Machines are closed by the after-callbacks, and by the store should those not run.
 *
 * <p>Configuration parameters (or system properties): {@value #QEMU_BINARY_PROPERTY} the QEMU binary to check for
 * and to run for machines without a spec (default {@code $KILN_QEMU}, else {@code qemu-system-x86_64});
 * {@value #EVIDENCE_DIR_PROPERTY} where evidence goes (default {@value #DEFAULT_EVIDENCE_DIR}, relative to the
 * working directory).
 */
public final class KilnExtension implements ExecutionCondition, BeforeAllCallback, AfterAllCallback, BeforeEachCallback,
        AfterEachCallback, ParameterResolver, TestExecutionExceptionHandler, LifecycleMethodExecutionExceptionHandler {
    public static final String QEMU_BINARY_PROPERTY = "kiln.qemu.binary";
    public static final String EVIDENCE_DIR_PROPERTY = "kiln.evidence.dir";
    public static final String DEFAULT_EVIDENCE_DIR = "target/kiln";

    /** Made by JUnit, from {@code @KilnTest} or {@code @ExtendWith}. */
    public KilnExtension() {}

    // ---- skipping without QEMU -------------------------------------------------------------------

    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        Optional<KilnTest> kilnTest = context.getTestClass().flatMap(KilnExtension::findKilnTest);
        if (kilnTest.isEmpty() || !kilnTest.get().disabledWithoutQemu()) {
            return ConditionEvaluationResult.enabled("QEMU is not required to be present");
        }
        String binary = qemuBinary(context);
        Optional<Path> found = Executables.find(binary);
        if (found.isPresent()) return ConditionEvaluationResult.enabled("QEMU found: " + found.get());
        String where = binary.contains("/") ? "'" + binary + "' is missing or not executable"
                : "'" + binary + "' is not on PATH (" + Executables.path() + ")";
        return ConditionEvaluationResult.disabled("QEMU not found: " + where
                + "; install qemu-system-x86 or set KILN_QEMU to run it (@KilnTest(disabledWithoutQemu = false) fails instead of skipping)");
    }

    /** On the class, a superclass, or a class enclosing a {@code @Nested} one. */
    private static Optional<KilnTest> findKilnTest(Class<?> testClass) {
        for (Class<?> c = testClass; c != null; c = c.getEnclosingClass()) {
            Optional<KilnTest> a = AnnotationSupport.findAnnotation(c, KilnTest.class);
            if (a.isPresent()) return a;
        }
        return Optional.empty();
    }

    /** The same lookup as {@code QemuMachine.Builder}, with the configuration parameter first. */
    static String qemuBinary(ExtensionContext context) {
        return configuredBinary(context).orElse(System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64"));
    }

    private static Optional<String> configuredBinary(ExtensionContext context) {
        return context.getConfigurationParameter(QEMU_BINARY_PROPERTY).filter(s -> !s.isBlank());
    }

    // ---- class scope: static fields ----------------------------------------------------------------

    @Override
    public void beforeAll(ExtensionContext context) {
        Class<?> testClass = context.getRequiredTestClass();
        List<Field> fields = vmFields(testClass, true);
        if (fields.isEmpty()) return;
        List<VmRequest> requests = fields.stream().map(f -> request(context, f, testClass)).toList();
        List<ManagedVm> vms = start(context, requests, "beforeAll");
        for (int i = 0; i < fields.size(); i++) inject(fields.get(i), null, vms.get(i));
    }

    @Override
    public void afterAll(ExtensionContext context) {
        RuntimeException e = VmScope.closeIn(context);
        VmTemplates.closeIn(context);
        if (e != null) throw e;
    }

    // ---- test scope: instance fields and the test method's parameters --------------------------------

    @Override
    public void beforeEach(ExtensionContext context) {
        List<VmRequest> requests = new ArrayList<>();
        List<Field> fields = new ArrayList<>();
        List<Object> owners = new ArrayList<>();
        for (Object instance : context.getRequiredTestInstances().getAllInstances()) {
            for (Field f : vmFields(instance.getClass(), false)) {
                fields.add(f);
                owners.add(instance);
                requests.add(request(context, f, instance.getClass()));
            }
        }
        // Unnamed @Vm parameters of the test method start now, with the fields; named ones may reuse a machine.
        Method method = context.getRequiredTestMethod();
        List<Integer> parameters = new ArrayList<>();
        Parameter[] ps = method.getParameters();
        for (int i = 0; i < ps.length; i++) {
            Vm vm = ps[i].getAnnotation(Vm.class);
            if (vm == null || !vm.name().isEmpty()) continue;
            String label = label(ps[i], i, method);
            checkType(ps[i].getType(), label);
            parameters.add(i);
            requests.add(new VmRequest(label, vm, ps[i].getType(), context.getRequiredTestClass(), configuredBinary(context)));
        }
        if (requests.isEmpty()) return;
        List<ManagedVm> vms = start(context, requests, null);
        for (int i = 0; i < fields.size(); i++) inject(fields.get(i), owners.get(i), vms.get(i));
        VmScope scope = VmScope.of(context);
        for (int i = 0; i < parameters.size(); i++) scope.putTestParameter(parameters.get(i), vms.get(fields.size() + i));
    }

    @Override
    public void afterEach(ExtensionContext context) {
        RuntimeException e = VmScope.closeIn(context);
        if (e != null) throw e;
    }

    // ---- parameters ----------------------------------------------------------------------------------

    @Override
    public boolean supportsParameter(ParameterContext parameter, ExtensionContext context) {
        return parameter.isAnnotated(Vm.class);
    }

    @Override
    public Object resolveParameter(ParameterContext parameter, ExtensionContext context) {
        Executable executable = parameter.getDeclaringExecutable();
        String label = label(parameter.getParameter(), parameter.getIndex(), executable);
        if (executable instanceof Constructor<?>) {
            throw new ParameterResolutionException(label + ": @Vm is not supported on constructor parameters; use a field");
        }
        try {
            checkType(parameter.getParameter().getType(), label);
        } catch (ExtensionConfigurationException e) {
            throw new ParameterResolutionException(e.getMessage());
        }
        Vm vm = parameter.findAnnotation(Vm.class).orElseThrow();
        if (!vm.name().isEmpty()) {
            Optional<ManagedVm> running = VmScope.findById(context, vm.name());
            if (running.isPresent()) return checked(running.get(), parameter.getParameter().getType(), label);
        }
        VmScope scope = VmScope.of(context);
        if (context.getTestMethod().filter(executable::equals).isPresent()) {
            Optional<ManagedVm> ahead = scope.testParameter(parameter.getIndex());
            if (ahead.isPresent()) return ahead.get().machine();
        }
        // A lifecycle method's parameter, or a named one nobody started yet: a machine of its own.
        Class<?> testClass = context.getRequiredTestClass();
        try {
            VmRequest request = new VmRequest(label, vm, parameter.getParameter().getType(), testClass, configuredBinary(context));
            return start(context, List.of(request), executable.getName()).getFirst().machine();
        } catch (RuntimeException e) {
            throw new ParameterResolutionException(e.getMessage(), e);
        }
    }

    // ---- evidence on failure ---------------------------------------------------------------------------

    @Override
    public void handleTestExecutionException(ExtensionContext context, Throwable failure) throws Throwable {
        throw withEvidence(context, failure, null);
    }

    @Override
    public void handleBeforeAllMethodExecutionException(ExtensionContext context, Throwable failure) throws Throwable {
        throw withEvidence(context, failure, "beforeAll");
    }

    @Override
    public void handleBeforeEachMethodExecutionException(ExtensionContext context, Throwable failure) throws Throwable {
        throw withEvidence(context, failure, null);
    }

    @Override
    public void handleAfterEachMethodExecutionException(ExtensionContext context, Throwable failure) throws Throwable {
        throw withEvidence(context, failure, null);
    }

    @Override
    public void handleAfterAllMethodExecutionException(ExtensionContext context, Throwable failure) throws Throwable {
        throw withEvidence(context, failure, "afterAll");
    }

    /**
     * Writes the evidence of every machine in scope and returns the failure, unchanged but for a suppressed
     * {@link KilnEvidence} naming the directory. Aborted and skipped tests, and failures with no machine in scope, pass
     * through untouched.
     */
    static Throwable withEvidence(ExtensionContext context, Throwable failure, String classPhase) {
        if (failure instanceof IncompleteExecutionException) return failure;
        for (Throwable s : failure.getSuppressed()) if (s instanceof KilnEvidence) return failure;
        List<ManagedVm> vms = VmScope.inScope(context).stream().filter(ManagedVm::spawned).toList();
        if (vms.isEmpty()) return failure;
        try {
            Path dir = Evidence.write(context, Evidence.testDir(context, classPhase), vms, failure);
            failure.addSuppressed(new KilnEvidence(dir));
        } catch (RuntimeException e) {
            failure.addSuppressed(e);
        }
        return failure;
    }

    // ---- helpers -----------------------------------------------------------------------------------------

    private static List<ManagedVm> start(ExtensionContext context, List<VmRequest> requests, String classPhase) {
        if (classPhase != null) {
            for (VmRequest r : requests) {
                if (r.vm().template()) {
                    throw new ExtensionConfigurationException(r.label() + ": template = true is for per-test machines (instance"
                            + " fields, test-method parameters); a class's machine boots once anyway");
                }
            }
        }
        return VmStarter.startAll(requests, VmScope.of(context), VmTemplates.of(context),
                (vm, failure) -> Evidence.write(context, Evidence.testDir(context, classPhase), List.of(vm), failure));
    }

    /** A running machine handed to a parameter by name must fit the parameter's type. */
    private static Object checked(ManagedVm vm, Class<?> type, String label) {
        if (!type.isInstance(vm.machine())) {
            throw new ParameterResolutionException(label + " is a " + type.getSimpleName() + ", but the running machine '"
                    + vm.machine().id() + "' is a " + vm.machine().getClass().getSimpleName());
        }
        return vm.machine();
    }

    private static List<Field> vmFields(Class<?> testClass, boolean statics) {
        List<Field> fields = AnnotationSupport.findAnnotatedFields(testClass, Vm.class,
                f -> ModifierSupport.isStatic(f) == statics, HierarchyTraversalMode.TOP_DOWN);
        for (Field f : fields) {
            String label = label(f);
            checkType(f.getType(), label);
            if (ModifierSupport.isFinal(f)) throw new ExtensionConfigurationException(label + " must not be final");
        }
        return fields;
    }

    private static VmRequest request(ExtensionContext context, Field field, Class<?> testClass) {
        return new VmRequest(label(field), field.getAnnotation(Vm.class), field.getType(), testClass, configuredBinary(context));
    }

    private static void checkType(Class<?> type, String label) {
        if (!VmRequest.supports(type)) {
            throw new ExtensionConfigurationException(label + " has type " + type.getName()
                    + "; a @Vm is a dev.kiln.Machine, a QemuMachine or a FirecrackerMachine");
        }
    }

    private static void inject(Field field, Object owner, ManagedVm vm) {
        try {
            field.setAccessible(true);
            field.set(owner, vm.machine());
        } catch (IllegalAccessException | RuntimeException e) {
            throw new ExtensionConfigurationException("cannot set " + label(field) + ": " + e, e);
        }
    }

    static String label(Field f) {
        return "@Vm " + f.getDeclaringClass().getSimpleName() + "." + f.getName();
    }

    static String label(Parameter p, int index, Executable owner) {
        String name = p.isNamePresent() ? "'" + p.getName() + "'" : "#" + index;
        return "@Vm parameter " + name + " of " + owner.getDeclaringClass().getSimpleName() + "." + owner.getName() + "()";
    }
}
