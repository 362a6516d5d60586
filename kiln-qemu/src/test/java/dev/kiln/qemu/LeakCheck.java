package dev.kiln.qemu;

import dev.kiln.support.Leftovers;

import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** After a test class: no VMM child of this JVM and no work dir of its own is left. */
final class LeakCheck {
    static void assertNoneLeft() {
        assertThat(Leftovers.after(Duration.ofSeconds(3))).as("VMM processes and work dirs left behind").isEmpty();
    }

    static List<String> leftovers() {
        return Leftovers.now();
    }
}
