package dev.kiln.junit;

import org.junit.jupiter.api.extension.ExtendWith;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Inherited;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * A test class whose {@link Vm @Vm} fields and parameters are real virtual machines, started, awaited and
 * closed by {@link KilnExtension}.
 *
 * <pre>{@code
 * @KilnTest
 * class WebServerTest {
 *     @Vm static QemuMachine server;            // one machine for the whole class
 *
 *     @Test
 *     void answers(@Vm(memoryMib = 192) QemuMachine client) {   // one machine for this test
 *         ...
 *     }
 * }
 * }</pre>
 */
@Target(ElementType.TYPE)
@Retention(RetentionPolicy.RUNTIME)
@Documented
@Inherited
@ExtendWith(KilnExtension.class)
public @interface KilnTest {
    /**
     * When QEMU is missing (neither {@code $KILN_QEMU} nor {@code qemu-system-x86_64} on PATH) the class is
     * skipped, with the reason shown in the report. {@code false}: run anyway, so the machines fail to start
     * with the launch error (for suites that must not silently skip).
     */
    boolean disabledWithoutQemu() default true;
}
