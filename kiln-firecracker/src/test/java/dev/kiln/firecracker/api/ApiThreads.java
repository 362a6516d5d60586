package dev.kiln.firecracker.api;

import dev.kiln.support.Deadline;

import java.time.Duration;
import java.util.List;

import static org.assertj.core.api.Assertions.assertThat;

/** After a test that closed its clients: none of the HTTP client's threads is left running. */
final class ApiThreads {
    private static final String PREFIX = "kiln-firecracker-api";
    private static final Duration WAIT = Duration.ofSeconds(5);

    private ApiThreads() {}

    static void assertNoneLeft() {
        Deadline deadline = Deadline.after(WAIT);
        List<String> left = live();
        while (!left.isEmpty() && !deadline.expired()) {
            try {
                Thread.sleep(20); // threads end on their own after stop(): nothing to block on but polling
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
            left = live();
        }
        assertThat(left).as("HTTP client threads still running %d ms after the clients were closed", WAIT.toMillis()).isEmpty();
    }

    private static List<String> live() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.isAlive() && t.getName().startsWith(PREFIX))
                .map(t -> t.getName() + " (" + t.getState() + ")").sorted().toList();
    }
}
