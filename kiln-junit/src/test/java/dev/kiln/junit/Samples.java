package dev.kiln.junit;

import dev.kiln.qemu.QemuMachine;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInfo;
import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.nio.file.Path;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * Test classes that {@link KilnExtensionFailuresTest} runs through the EngineTestKit to watch them fail. Surefire
 * leaves nested classes alone, and should one be run by other means it is skipped: each runs only when the
 * configuration parameter {@value #ENABLED} is set.
 */
final class Samples {
    static final String ENABLED = "kiln.junit.samples";

    private Samples() {}

    static final class OnlyInTestKit implements ExecutionCondition {
        @Override
        public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
            return context.getConfigurationParameter(ENABLED).isPresent()
                    ? ConditionEvaluationResult.enabled("run by the EngineTestKit")
                    : ConditionEvaluationResult.disabled("a sample for KilnExtensionFailuresTest, run only by it");
        }
    }

    /** One machine shared by tests that fail in every way a test can. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class Failing {
        @Vm
        static QemuMachine vm;

        @BeforeEach
        void setUp(TestInfo test) {
            if (test.getTags().contains("broken-setup")) throw new IllegalStateException("setup broke");
        }

        @Test
        void assertionFails() {
            assertThat(vm.guest().exec("echo", "guest says hi").stdoutText()).isEqualTo("something else");
        }

        @Test
        void throwsAnException() {
            throw new IllegalStateException("boom");
        }

        @Test
        @Tag("broken-setup")
        void setUpFails() {
        }

        @AfterEach
        void tearDown(TestInfo test) {
            if (test.getTags().contains("broken-teardown")) throw new IllegalStateException("teardown broke");
        }

        @Test
        @Tag("broken-teardown")
        void tearDownFails() {
        }

        @Test
        void isAborted() {
            Assumptions.assumeTrue(false, "not today");
        }

        @Test
        void passes() {
            assertThat(vm.isRunning()).isTrue();
        }
    }

    /** Skipped when QEMU is missing (the default). */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class NeedsQemu {
        @Vm
        static QemuMachine vm;

        @Test
        void neverRuns() {
            throw new AssertionError("should have been skipped");
        }
    }

    /** Fails when QEMU is missing. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest(disabledWithoutQemu = false)
    static class InsistsOnQemu {
        @Vm
        static QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class SpecThrows {
        @Vm(spec = "broken")
        static QemuMachine vm;

        static QemuMachine.Builder broken() {
            throw new IllegalStateException("no spec today");
        }

        @Test
        void neverRuns() {
        }
    }

    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class PackagesWithoutDebian {
        @Vm(packages = "nginx-light")
        static QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class UnknownImage {
        @Vm(image = "alpine")
        static QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class WrongType {
        @Vm
        static String vm;

        @Test
        void neverRuns() {
        }
    }

    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class SpecMissing {
        @Vm(spec = "noSuchMethod")
        QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    /** Two machines of one scope: the good one boots while the other cannot start; the good one must go. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class OneCannotStart {
        @Vm
        static QemuMachine good;
        @Vm(spec = "missingKernel")
        static QemuMachine bad;

        static QemuMachine.Builder missingKernel() {
            return QemuMachine.builder().kernel(Path.of("/nonexistent/vmlinuz"), null);
        }

        @Test
        void neverRuns() {
        }
    }

    /** Per-test clones asked of a machine QEMU cannot save (virtio-crypto blocks migration): each test boots cold. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class TemplateBlocked {
        @Vm(template = true, spec = "blocked")
        QemuMachine vm;

        static QemuMachine.Builder blocked() {
            return QemuMachine.builder().args("-object", "cryptodev-backend-builtin,id=crypto0", "-device", "virtio-crypto-device,cryptodev=crypto0");
        }

        @Test
        void bootsCold() {
            assertThat(vm.transitions().getFirst().reason()).isEqualTo("start()");
        }

        @Test
        void bootsColdToo() {
            assertThat(vm.transitions().getFirst().reason()).isEqualTo("start()");
        }
    }

    /** A template for the class's own machine: meaningless, it boots once. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class TemplateOnAStaticField {
        @Vm(template = true)
        static QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    /** A machine on Firecracker: it needs real KVM to boot its guest. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class OnFirecracker {
        @Vm(backend = "firecracker")
        static dev.kiln.Machine vm;

        @Test
        void runs() {
            assertThat(vm.guest().exec("true").exitCode()).isZero();
        }
    }

    /** A field declared for one backend and asked to run on the other. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class BackendMismatch {
        @Vm(backend = "firecracker")
        static QemuMachine vm;

        @Test
        void neverRuns() {
        }
    }

    /** A guest whose init is a shell never prints the ready marker. */
    @ExtendWith(OnlyInTestKit.class)
    @KilnTest
    static class NeverReady {
        @Test
        void neverRuns(@Vm(append = "rdinit=/bin/sh", readyTimeoutSeconds = 5) QemuMachine vm) {
        }
    }
}
