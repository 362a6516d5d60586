package dev.kiln.firecracker;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;

import static org.assertj.core.api.Assertions.assertThat;

/** After a test: no Firecracker of this JVM (jailed ones included), no work dir and no jail of ours is left. */
final class LeakCheck {
    /** The ids Kiln gives this JVM's machines (firecracker-PID-N), also in their work dirs' names (kiln-ID-…). */
    static final String ID_PREFIX = "firecracker-" + ProcessHandle.current().pid() + "-";

    static void assertNoneLeft(Path... jailBases) {
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        List<String> left;
        do {
            left = leftovers(jailBases);
            if (left.isEmpty()) return;
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        } while (System.nanoTime() < deadline);
        assertThat(left).as("Firecracker processes, work dirs and jails left behind").isEmpty();
    }

    static List<String> leftovers(Path... jailBases) {
        List<String> left = new ArrayList<>(ProcessHandle.allProcesses()
                .filter(p -> p.info().commandLine().map(c -> c.contains(ID_PREFIX) && !c.contains("surefire")).orElse(false))
                .map(p -> "process " + p.pid() + " " + p.info().commandLine().orElse("")).toList());
        List<Path> dirs = new ArrayList<>(List.of(Path.of(System.getProperty("java.io.tmpdir"))));
        for (Path base : jailBases) {
            if (!Files.isDirectory(base)) continue;
            try (Stream<Path> execs = Files.list(base)) {
                dirs.addAll(execs.filter(Files::isDirectory).toList());
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        }
        for (Path dir : dirs) {
            try (Stream<Path> s = Files.list(dir)) {
                s.filter(p -> p.getFileName().toString().contains(ID_PREFIX)).forEach(p -> left.add("dir " + p));
            } catch (IOException e) {
                throw new AssertionError(e);
            }
        }
        left.addAll(dev.kiln.support.Leftovers.now());
        return left;
    }
}
