package dev.kiln;

import java.nio.file.Path;
import java.time.Duration;
import java.util.OptionalInt;
import java.util.OptionalLong;

/**
 * A virtual machine and the VMM process that runs it. Close it (try-with-resources) and it is gone:
 * process, sockets, FIFOs and its work directory.
 */
public interface Machine extends AutoCloseable {
    /** A name unique in this JVM, used for the work dir and in logs. */
    String id();

    MachineState state();

    /** Spawns the VMM and connects to it. May be called once; on failure everything is cleaned up. */
    Machine start();

    void pause();

    void resume();

    /**
     * Graceful stop: asks the VMM to quit, waits up to {@code timeout}, then kills it. Cleanup always
     * runs. Throws {@link AbnormalShutdownException} when the graceful path failed.
     */
    void shutdown(Duration timeout);

    /** Kills the VMM (SIGKILL), waits for it and cleans up. */
    void kill();

    /** Waits for the VMM to exit on its own (the guest powered off), then cleans up; returns its exit code. */
    int awaitExit(Duration timeout);

    boolean isRunning();

    /** The VMM's exit code once it has exited; a signal death shows as 128 + signal. */
    OptionalInt exitCode();

    OptionalLong pid();

    Path workDir();

    Console console();

    Guest guest();

    /** The VMM's own output (stdout and stderr), so far or after exit. */
    String vmmLog();

    /** Shuts down (kill if need be) and cleans up; idempotent. */
    @Override
    void close();
}
