package dev.kiln.firecracker.api;

import dev.kiln.os.Posix;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import org.junit.jupiter.api.Assumptions;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/**
 * A bare Firecracker (no guest, no Kiln machine) whose API socket the client tests talk to. Its API server answers
 * before any guest exists, so this needs no KVM. {@link #close()} kills it and removes its directory.
 */
final class FirecrackerProcess implements AutoCloseable {
    private static final Duration SOCKET_WAIT = Duration.ofSeconds(10);

    private final Path dir;
    private final Path socket;
    private final Path output;
    private final Process process;

    private FirecrackerProcess(Path dir, Process process) {
        this.dir = dir;
        this.socket = dir.resolve("api.sock");
        this.output = dir.resolve("firecracker.out");
        this.process = process;
    }

    /** The binary named by FIRECRACKER_BIN; the test is skipped, with the reason shown, when there is none. */
    static String binary() {
        String bin = System.getenv("FIRECRACKER_BIN");
        Assumptions.assumeTrue(bin != null && !bin.isBlank(),
                "FIRECRACKER_BIN is not set: point it at a Firecracker release binary to run this test");
        Assumptions.assumeTrue(Executables.find(bin).isPresent(), "FIRECRACKER_BIN=" + bin + " is not an executable file");
        return bin;
    }

    /** Starts {@code firecracker --api-sock <tmp>/api.sock --id t1 extraArgs…} and waits for its API socket. */
    static FirecrackerProcess start(String... extraArgs) {
        String bin = binary();
        Path dir;
        try {
            dir = Files.createTempDirectory("kiln-fc-api-test-");
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        List<String> command = new ArrayList<>(List.of(bin, "--api-sock", dir.resolve("api.sock").toString(), "--id", "t1"));
        command.addAll(List.of(extraArgs));
        Process process;
        try {
            process = new ProcessBuilder(command)
                    .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
                    .redirectErrorStream(true)
                    .redirectOutput(dir.resolve("firecracker.out").toFile())
                    .start();
        } catch (IOException e) {
            deleteTree(dir);
            throw new UncheckedIOException("cannot start " + command, e);
        }
        FirecrackerProcess fc = new FirecrackerProcess(dir, process);
        try {
            fc.awaitSocket();
            return fc;
        } catch (RuntimeException | Error e) {
            fc.close();
            throw e;
        }
    }

    private void awaitSocket() {
        Deadline deadline = Deadline.after(SOCKET_WAIT);
        while (!Files.exists(socket)) {
            if (!process.isAlive()) {
                throw new IllegalStateException("Firecracker exited with " + process.exitValue()
                        + " before creating " + socket + "; its output: " + output());
            }
            if (deadline.expired()) {
                throw new IllegalStateException("Firecracker (pid " + process.pid() + ") did not create " + socket
                        + " within " + SOCKET_WAIT.toMillis() + " ms; its output so far: " + output());
            }
            try {
                Thread.sleep(5); // polling a file's appearance: there is nothing to block on
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("interrupted while waiting for " + socket, e);
            }
        }
    }

    Path socket() { return socket; }

    long pid() { return process.pid(); }

    boolean isAlive() { return process.isAlive(); }

    /** Whether Firecracker has exited or does within {@code timeout} (its socket may close just before its exit is seen). */
    boolean exitsWithin(Duration timeout) {
        try {
            return process.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return !process.isAlive();
        }
    }

    /** What Firecracker wrote to stdout and stderr so far, for failure messages. */
    String output() {
        try {
            return Files.exists(output) ? Files.readString(output, StandardCharsets.UTF_8) : "(none)";
        } catch (IOException e) {
            return "(unreadable: " + e + ")";
        }
    }

    /** Freezes Firecracker (SIGSTOP): its socket still accepts and buffers, but nothing is answered. */
    void stop() {
        if (!Posix.kill(process.pid(), Posix.SIGSTOP)) throw new IllegalStateException("cannot SIGSTOP " + process.pid());
    }

    /** Lets a stopped Firecracker go on (SIGCONT). */
    void resume() {
        Posix.kill(process.pid(), Posix.SIGCONT);
    }

    /** Kills Firecracker as it is (SIGKILL ends a stopped process too, without letting it answer first) and waits. */
    void kill() {
        process.destroyForcibly();
        awaitExit(process);
    }

    @Override
    public void close() {
        resume();
        process.destroyForcibly();
        awaitExit(process);
        deleteTree(dir);
    }

    private static void awaitExit(Process process) {
        if (process == null) return;
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("Firecracker (pid " + process.pid() + ") did not exit within 10 s of SIGKILL");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void deleteTree(Path dir) {
        if (dir == null || !Files.exists(dir)) return;
        try (Stream<Path> paths = Files.walk(dir)) {
            for (Path p : paths.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(p);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot remove " + dir, e);
        }
    }
}
