package dev.kiln.support;

import java.io.IOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * What this JVM's machines would have left behind if their cleanup failed: VMM processes among its
 * descendants and work dirs it owns. For tests and for checks at the end of a run: a machine still running
 * counts too, so ask when none should be (not while other tests of the JVM run machines in parallel).
 */
public final class Leftovers {
    private static final Set<String> VMMS = Set.of("qemu-system", "firecracker", "jailer", "virtiofsd");

    private Leftovers() {}

    /** VMM processes descended from this JVM and work dirs under {@code base} that name this JVM as owner. */
    public static List<String> now(Path base) {
        List<String> left = new ArrayList<>();
        ProcessHandle.current().descendants()
                .filter(p -> p.info().command().map(c -> VMMS.stream().anyMatch(c::contains)).orElse(false))
                .forEach(p -> left.add("process " + p.pid() + " " + p.info().commandLine().orElse("")));
        String me = WorkDir.owner(ProcessHandle.current());
        try (DirectoryStream<Path> dirs = Files.newDirectoryStream(base, "kiln-*")) {
            for (Path dir : dirs) {
                try {
                    if (Files.readString(dir.resolve(WorkDir.OWNER_FILE)).strip().equals(me)) left.add("dir " + dir);
                } catch (IOException e) {
                    // no owner file: not a work dir, or one being removed right now
                }
            }
        } catch (IOException e) {
            left.add("(cannot list " + base + ": " + e.getMessage() + ")");
        }
        return left;
    }

    /** {@link #now} under the default temp dir. */
    public static List<String> now() {
        return now(Path.of(System.getProperty("java.io.tmpdir")));
    }

    /** Waits up to {@code grace} for cleanups still under way; returns what is left then (empty: nothing). */
    public static List<String> after(Duration grace) {
        long deadline = System.nanoTime() + grace.toNanos();
        while (true) {
            List<String> left = now();
            if (left.isEmpty() || System.nanoTime() - deadline >= 0) return left;
            try {
                Thread.sleep(50);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return left;
            }
        }
    }
}
