package dev.kiln.junit;

import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.extension.AfterAllCallback;
import org.junit.jupiter.api.extension.ExtensionContext;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * No QEMU child of this JVM and no default-named work dir of ours is left. As an extension declared before
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
        long deadline = System.nanoTime() + Duration.ofSeconds(3).toNanos();
        List<String> left;
        do {
            left = leftovers();
            if (left.isEmpty()) return;
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        } while (System.nanoTime() < deadline);
        assertThat(left).as("QEMU processes and work dirs left behind").isEmpty();
    }

    static List<String> leftovers() {
        Stream<String> procs = ProcessHandle.current().descendants()
                .filter(p -> p.info().command().map(c -> c.contains("qemu-system")).orElse(false))
                .map(p -> "process " + p.pid() + " " + p.info().commandLine().orElse(""));
        Stream<String> dirs;
        try (Stream<Path> s = Files.list(Path.of(System.getProperty("java.io.tmpdir")))) {
            String mine = "kiln-qemu-" + ProcessHandle.current().pid() + "-";
            dirs = s.filter(p -> p.getFileName().toString().startsWith(mine)).map(p -> "dir " + p).toList().stream();
        } catch (IOException e) {
            throw new AssertionError(e);
        }
        return Stream.concat(procs, dirs).toList();
    }
}
