package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.image.DefaultImage;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * microvm under TCG hangs about one boot in ten when the kernel cannot calibrate the TSC against the PIT.
 * Kiln passes tsc_early_khz; 30 boots in a row must all reach the ready marker.
 */
@ExtendWith(QemuAvailable.class)
class RepeatedBootTest {
    static final int BOOTS = 30;

    @AfterAll
    static void nothingLeaks() {
        LeakCheck.assertNoneLeft();
    }

    @Test
    void thirtyBootsInARowAllReachTheReadyMarker() {
        GuestImage image = DefaultImage.get(System.out::println);
        List<String> failures = new ArrayList<>();
        for (int i = 0; i < BOOTS; i++) {
            try (QemuMachine vm = QemuMachine.builder().image(image).agent(true).start()) {
                try {
                    vm.console().await(image.readyMarker(), Duration.ofSeconds(60));
                } catch (RuntimeException e) {
                    failures.add("boot " + i + ": " + e.getMessage());
                }
                vm.kill();
            }
        }
        assertThat(failures).as("boots that did not reach %s", image.readyMarker()).isEmpty();
    }
}
