package dev.kiln;

import java.nio.file.Path;
import java.time.Duration;

/** The agent inside a running guest: run commands, move files, power off. */
public interface Guest {
    /** Waits until the agent answers; fails with {@link WaitTimeoutException} naming what was seen. */
    Guest awaitReady(Duration timeout);

    /** Runs argv (no shell) and waits for it. A non-zero exit is a result, not an exception. */
    default ExecResult exec(String... argv) {
        return exec(ExecRequest.of(argv).build());
    }

    ExecResult exec(ExecRequest request);

    /** Copies a host file into the guest, byte for byte, creating or truncating {@code guestPath}. */
    void copyIn(Path hostFile, String guestPath);

    /** Copies a guest file to the host, byte for byte. */
    void copyOut(String guestPath, Path hostFile);

    /** Asks the guest to power itself off; returns once the request was accepted. */
    void shutdown();
}
