package dev.kiln.qemu;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** After a test class: no QEMU child of this JVM and no work dir of ours is left. */
final class LeakCheck {
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
