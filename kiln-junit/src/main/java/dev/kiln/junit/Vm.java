package dev.kiln.junit;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * A virtual machine for a test, of type {@code QemuMachine} or {@code dev.kiln.Machine}.
 * <ul>
 *   <li>static field: one machine for the class, started before all its tests and closed after them;</li>
 *   <li>instance field: a new machine for each test, closed after it;</li>
 *   <li>parameter of a test method or of {@code @BeforeEach}/{@code @AfterEach}: a machine for that test;
 *       of {@code @BeforeAll}/{@code @AfterAll}: one for the class.</li>
 * </ul>
 * Machines of one scope (a class's static fields; a test's instance fields and test-method parameters) start in
 * parallel. Unless {@link #awaitReady()} is off, the test runs once the guest printed its image's ready marker
 * and its agent answers.
 *
 * <p>What to boot: the {@link #spec()} method's builder if there is one, else a fresh
 * {@code QemuMachine.builder()}; the attributes below that are not left at their defaults are applied on top,
 * and the default image ({@code DefaultImage}) is used when the builder has none.
 */
@Target({ElementType.FIELD, ElementType.PARAMETER})
@Retention(RetentionPolicy.RUNTIME)
@Documented
public @interface Vm {
    /**
     * The name of a static method of the test class (or of a class enclosing it), taking no arguments and
     * returning a {@code QemuMachine.Builder}: the machine's specification in code. A new builder is asked for
     * each machine.
     */
    String spec() default "";

    /**
     * The machine's id, which names it in logs and evidence. Default: the builder's, else a unique
     * {@code qemu-<pid>-<n>}. A <em>parameter</em> with a name gets the machine of that id that is already running
     * in the test's scope or an enclosing one (a field's, or an earlier parameter's), and a new one only when
     * there is none.
     */
    String name() default "";

    /** Guest memory; 0 keeps the builder's (256 MiB unless the spec says otherwise). */
    int memoryMib() default 0;

    /** Virtual CPUs; 0 keeps the builder's (1 unless the spec says otherwise). */
    int cpus() default 0;

    /** QEMU's {@code -machine} value, e.g. {@code q35}; empty keeps the builder's (microvm for kernel boots). */
    String machine() default "";

    /** Extra kernel command-line arguments. */
    String append() default "";

    /**
     * Wait, after the start, for the image's ready marker on the console and then for the guest agent to answer.
     * Off: the machine is handed over right after QEMU started (to watch the boot, say).
     */
    boolean awaitReady() default true;

    /** How long the ready wait may take, in seconds (generous: under TCG a boot takes seconds). */
    int readyTimeoutSeconds() default 120;
}
