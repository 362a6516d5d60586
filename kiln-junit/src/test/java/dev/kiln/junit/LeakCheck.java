package dev.kiln.junit;

import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import dev.kiln.support.Leftovers;

import java.time.Duration;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * No VMM child of this JVM and no work dir it owns is left. As an extension declared before
 * {@code @KilnTest}, its afterAll runs after Kiln's has closed the class's machines.
 */
final class LeakCheck implements AfterAllCallback {
    @Override
    public void afterAll(ExtensionContext context) {
        // @Nested classes inherit the extension, but their outer class's machines are still meant to run.
        if (context.getRequiredTestClass().isAnnotationPresent(Nested.class)) return;
        assertNoneLeft();
    }

    static void assertNoneLeft() {
        assertThat(Leftovers.after(Duration.ofSeconds(3))).as("VMM processes and work dirs left behind").isEmpty();
    }
}
