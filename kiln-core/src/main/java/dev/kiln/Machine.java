package dev.kiln;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * A virtual machine and the VMM process that runs it, on QEMU or Firecracker. Close it (try-with-resources) and it
 * is gone: process, sockets, FIFOs, its work directory and whatever its backend made (a jail, cgroups).
 *
 * <p>Its life is the same on every backend ({@link MachineState}); {@link #transitions()} lists the steps it took.
 * What only one VMM can do stays on that backend's type, reached with {@link #as}:
 * {@code vm.as(QemuMachine.class).qmp()}, {@code vm.as(FirecrackerMachine.class).api()}.
 */
public interface Machine extends AutoCloseable {
    /** A name unique in this JVM, used for the work dir and in logs. */
    String id();

    Backend backend();

    /** What the machine was made from. */
    MachineSpec spec();

    MachineState state();

    /** Every state change so far, in order, with its reason. */
    List<StateChange> transitions();

    /**
     * Spawns the VMM, connects to it and awaits the spec's readiness probes. May be called once; on any failure
     * everything is cleaned up and a {@link LaunchException} says what happened.
     */
    Machine start();

    /**
     * {@link #start()}, but the machine goes on from {@code snapshot} instead of booting: the same spec (size, devices,
     * image) as the machine it was taken from, checked first; its disks are overlays over the snapshot's copies. Ready
     * once the spec's readiness probes pass ({@link Probe#imageReady()} meaning the agent, since the marker was printed
     * before the snapshot; console and VMM-log probes see only what comes after the restore), or, without any, once the
     * guest agent answers; the guest's clock is then set to the host's. See {@link Snapshot#restore(MachineSpec)}.
     */
    Machine startFrom(Snapshot snapshot);

    /**
     * Saves this running (or paused) machine into {@code dir} (made if missing; it must be empty): the VMM's state, a
     * copy of every disk it writes, what it is made of. The guest is paused meanwhile and runs on afterwards if it ran.
     */
    Snapshot snapshot(Path dir);

    /** Stops the guest's CPUs; nothing happens when it is paused already. */
    void pause();

    /** Lets a paused guest run again; nothing happens when it runs. */
    void resume();

    /**
     * Graceful stop: asks the VMM to quit, waits up to {@code timeout}, then kills it. Cleanup always runs. Throws
     * {@link AbnormalShutdownException} when the graceful path failed.
     */
    void shutdown(Duration timeout);

    /** Kills the VMM (SIGKILL), waits for it and cleans up. */
    void kill();

    /** Waits for the VMM to exit on its own (the guest powered off), then cleans up; returns its exit code. */
    int awaitExit(Duration timeout);

    /** How long each phase of {@link #start()} took. */
    StartTimings startTimings();

    /** Whether the VMM process runs. */
    boolean isRunning();

    /** The VMM's exit code once it has exited; a signal death shows as 128 + signal. */
    OptionalInt exitCode();

    OptionalLong pid();

    Path workDir();

    Console console();

    /** The guest agent; calls on a closed machine fail with {@link MachineClosedException}. */
    Guest guest();

    /**
     * The SSH session to the guest (opened at start when it is the guest's channel, else now): port forwards, and the
     * {@link Guest} API over SSH. Fails when the spec gives no way in ({@link SpecBuilder#cloudInit},
     * {@link SpecBuilder#ssh}). The session is the machine's and ends with it: its {@code close()} does nothing, so
     * try-with-resources on it is harmless; close its forwards and process handles when done with them.
     */
    SshChannel ssh();

    /** What the machine boots (Kiln's default image once resolved); empty for a VMM with no guest. */
    Optional<GuestImage> image();

    /** The VMM's own output (and log), so far or after exit. */
    String vmmLog();

    /** Waits until {@code pattern} matches the VMM's own output or log (anywhere since it started). */
    MatchResult awaitVmmLog(Pattern pattern, Duration timeout);

    /** Where the host reaches guest TCP port {@code guestPort} (a forward to 127.0.0.1); fails when there is none. */
    InetSocketAddress hostAddress(int guestPort);

    /**
     * Kills the machine as a cancellation: calls under way and later ones fail with {@link MachineCancelledException}.
     * Does nothing once the machine has stopped.
     */
    void cancel(String reason);

    /** Why the machine was cancelled, if it was. */
    Optional<String> cancellation();

    /** This machine as its backend's type, e.g. {@code QemuMachine}; fails naming the backend when it is not one. */
    default <T extends Machine> T as(Class<T> type) {
        if (type.isInstance(this)) return type.cast(this);
        throw new KilnException("machine " + id() + " runs on " + backend().displayName() + ": it is a "
                + getClass().getSimpleName() + ", not a " + type.getSimpleName());
    }

    /** Shuts down (kill if need be) and cleans up; idempotent, and safe from any thread. */
    @Override
    void close();
}
