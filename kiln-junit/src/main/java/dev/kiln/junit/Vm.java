package dev.kiln.junit;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * A virtual machine for a test, of type {@code dev.kiln.Machine}, {@code QemuMachine} or {@code FirecrackerMachine}.
 * <ul>
 *   <li>static field: one machine for the class, started before all its tests and closed after them;</li>
 *   <li>instance field: a new machine for each test, closed after it;</li>
 *   <li>parameter of a test method or of {@code @BeforeEach}/{@code @AfterEach}: a machine for that test;
 *       of {@code @BeforeAll}/{@code @AfterAll}: one for the class.</li>
 * </ul>
 * Machines of one scope (a class's static fields; a test's instance fields and test-method parameters) start in
 * parallel. The test runs once each machine's readiness probes passed (by default: the image's ready marker and its
 * guest agent), unless {@link #awaitReady()} is off.
 *
 * <p>What to boot: the {@link #spec()} method's spec if there is one, else the defaults ({@code MachineSpec.defaults()}:
 * Kiln's image, 1 vCPU, 256 MiB); the attributes below that are not left at their defaults are applied on top. The
 * backend: {@link #backend()} when set, else the field's type when it names one ({@code QemuMachine},
 * {@code FirecrackerMachine}), else the spec's ({@code $KILN_BACKEND}, else QEMU).
 */
@Target({ElementType.FIELD, ElementType.PARAMETER})
@Retention(RetentionPolicy.RUNTIME)
@Documented
public @interface Vm {
    /**
     * The name of a static method of the test class (or of a class enclosing it), taking no arguments and returning a
     * {@code MachineSpec} or a builder of one ({@code MachineSpec.Builder}, {@code QemuMachine.Builder},
     * {@code FirecrackerMachine.Builder}): the machine's specification in code. Called anew for each machine.
     */
    String spec() default "";

    /** {@code qemu} or {@code firecracker}; empty: the field's type, else the spec's. */
    String backend() default "";

    /**
     * The machine's id, which names it in logs and evidence. Default: the spec's, else a unique {@code <backend>-<pid>-<n>}.
     * A <em>parameter</em> with a name gets the machine of that id that is already running in the test's scope or an
     * enclosing one (a field's, or an earlier parameter's), and a new one only when there is none.
     */
    String name() default "";

    /**
     * {@code debian}: a Debian guest with systemd and {@link #packages()}, built from Debian's packages the first time
     * and cached ({@code DebianImage}); empty keeps the spec's image (Kiln's default image unless it says otherwise).
     */
    String image() default "";

    /** With {@code image = "debian"}: the packages to install in it. */
    String[] packages() default {};

    /** Guest memory; 0 keeps the spec's (256 MiB unless it says otherwise). */
    int memoryMib() default 0;

    /** Virtual CPUs; 0 keeps the spec's (1 unless it says otherwise). */
    int cpus() default 0;

    /** QEMU's {@code -machine} value, e.g. {@code q35}; empty keeps the spec's (microvm for kernel boots). QEMU only. */
    String machine() default "";

    /** Extra kernel command-line arguments. */
    String append() default "";

    /**
     * Wait, while starting, for the spec's readiness probes (by default the image's ready marker, then its agent). Off:
     * the machine is handed over right after its VMM is up (to watch the boot, say).
     */
    boolean awaitReady() default true;

    /** How long the ready wait may take, in seconds; 0 keeps the spec's (120 s unless it says otherwise). */
    int readyTimeoutSeconds() default 0;

    /**
     * Per-test machines (instance fields, test-method parameters): the first test's request boots the machine once,
     * saves it as a template ({@code Snapshot.template}) and every test, that one included, gets its own clone,
     * restored in a fraction of a boot — its writes its own, its clock, hostname and MACs set anew. One template per
     * declaration (the annotation's attributes and the declared type) and test class, removed after the class. When
     * the machine cannot be saved (a device that blocks migration, a backend without snapshots) every test boots it
     * cold instead, and the reason is logged and published as the report entry {@code kiln.template}.
     */
    boolean template() default false;
}
