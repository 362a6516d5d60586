package dev.kiln;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** The agent inside a running guest: run commands, move files, power off, wait for services. */
public interface Guest {
    /** Waits until the agent answers; fails with {@link WaitTimeoutException} naming what was seen. */
    Guest awaitReady(Duration timeout);

    /** Runs argv (no shell) and waits for it. A non-zero exit is a result, not an exception. */
    default ExecResult exec(String... argv) {
        return exec(ExecRequest.of(argv).build());
    }

    ExecResult exec(ExecRequest request);

    /**
     * Starts argv (no shell) and returns at once with its handle: pid, streams while it runs, wait, signal, kill.
     * The request's timeout does not apply (the handle's {@link GuestProcess#waitFor} takes one); its callbacks, when
     * set, receive the output instead of the handle's streams.
     */
    default GuestProcess start(String... argv) {
        return start(ExecRequest.of(argv).build());
    }

    GuestProcess start(ExecRequest request);

    /** Copies a host file into the guest, byte for byte, creating or truncating {@code guestPath}. */
    void copyIn(Path hostFile, String guestPath);

    /** Copies a guest file to the host, byte for byte. */
    void copyOut(String guestPath, Path hostFile);

    /** Asks the guest to power itself off; returns once the request was accepted. */
    void shutdown();

    // ---- service helpers, as the NixOS test driver has them: shell commands (sh -c) and waits ----------------

    /** Runs a shell command that must succeed; returns its stdout, else throws {@link CommandFailedException}. */
    default String succeed(String shellCommand) {
        return succeed(shellCommand, ExecRequest.DEFAULT_TIMEOUT);
    }

    default String succeed(String shellCommand, Duration timeout) {
        return GuestServices.succeed(this, shellCommand, timeout);
    }

    /** Runs a shell command that must fail; returns its stdout and stderr, else throws {@link CommandFailedException}. */
    default String fail(String shellCommand) {
        return GuestServices.fail(this, shellCommand, ExecRequest.DEFAULT_TIMEOUT);
    }

    /** Runs a shell command again (with a backoff) until it succeeds; returns its stdout. */
    default String waitUntilSucceeds(String shellCommand, Duration timeout) {
        return GuestServices.waitUntilSucceeds(this, shellCommand, timeout);
    }

    /** Runs a shell command again until it fails; returns its stdout and stderr. */
    default String waitUntilFails(String shellCommand, Duration timeout) {
        return GuestServices.waitUntilFails(this, shellCommand, timeout);
    }

    /** Waits until {@code path} exists in the guest. */
    default void waitForFile(String path, Duration timeout) {
        GuestServices.waitForFile(this, path, timeout);
    }

    /** Waits until something in the guest listens on TCP {@code port}. */
    default void waitForOpenPort(int port, Duration timeout) {
        GuestServices.waitForOpenPort(this, port, timeout);
    }

    /**
     * Waits until systemd unit {@code unit} is active; fails at once, showing its status and journal, when it failed,
     * does not exist, or is inactive with nothing pending to start it.
     */
    default void waitForUnit(String unit, Duration timeout) {
        GuestServices.waitForUnit(this, unit, timeout);
    }

    /** Runs {@code systemctl args…} (e.g. {@code systemctl("restart", "nginx")}); a non-zero exit is a result. */
    default ExecResult systemctl(String... args) {
        List<String> argv = new ArrayList<>(List.of("systemctl", "--no-pager"));
        argv.addAll(List.of(args));
        return exec(ExecRequest.of(argv).build());
    }
}
