package dev.kiln.qemu;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.extension.ConditionEvaluationResult;
import org.junit.jupiter.api.extension.ExecutionCondition;
import org.junit.jupiter.api.extension.ExtensionContext;

/** Skips, with the reason shown, when there is no QEMU to test against: {@code @ExtendWith(QemuAvailable.class)}. */
final class QemuAvailable implements ExecutionCondition {
    private static final String BINARY = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");

    @Override
    public ConditionEvaluationResult evaluateExecutionCondition(ExtensionContext context) {
        return Executables.find(BINARY).isPresent() ? ConditionEvaluationResult.enabled("QEMU found: " + BINARY)
                : ConditionEvaluationResult.disabled(reason());
    }

    /** For a single test in a class that otherwise needs no QEMU. */
    static void require() {
        Assumptions.assumeTrue(Executables.find(BINARY).isPresent(), reason());
    }

    private static String reason() {
        return "QEMU not found (" + BINARY + "): install qemu-system-x86 to run this test";
    }
}
