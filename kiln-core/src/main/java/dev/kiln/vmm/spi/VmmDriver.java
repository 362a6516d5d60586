package dev.kiln.vmm.spi;

import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.support.Deadline;
import dev.kiln.support.VmmProcess;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.OptionalInt;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * What a VMM backend tells the machine core ({@link dev.kiln.vmm.VmmMachine}): how to spawn its process, how to bring it up, how
 * to ask it to stop, and what to clean besides the work directory. The core owns the rest — the states and their
 * lock, the start guard, launch failures with their evidence, graceful stop then SIGKILL, the exit code, awaitExit,
 * cancellation, the lifeline and cleanup exactly once — so that each lives in one place for every VMM.
 *
 * <p>A driver serves one start of one machine. The core calls, in order: {@link #preflight}, {@link #spawn},
 * {@link #bringUp}; then any of {@link #pause}, {@link #resume}, {@link #requestStop}; and, exactly once,
 * {@link #disconnect} then {@link #removeLeftovers}, after the VMM is gone.
 */
public interface VmmDriver {
    /** Checks what can be checked before anything is made (binaries, files, options); throws what it finds. */
    void preflight();

    /** The image to boot when the spec asks for Kiln's default image (may build it: called at start, not before). */
    GuestImage defaultImage();

    /** Whether the VMM reads raw disks only (Firecracker): its overlays are then raw copies, and qcow2 files refused. */
    default boolean rawDrivesOnly() {
        return false;
    }

    /** Puts what the VMM needs into the launch's work dir and spawns it with {@link Launch#spawn}. */
    VmmProcess spawn(Launch launch) throws IOException;

    /** Connects to the spawned VMM and brings the machine up (configures it, boots the guest), within the deadline. */
    void bringUp(Deadline deadline) throws IOException;

    /** Whether the VMM can share host directories itself (virtio-fs, 9p); else a read-only share becomes an ext4 drive. */
    default boolean sharedFolders() {
        return false;
    }

    /** Literal console lines that mean the firmware found nothing to boot: the start fails at once with the line. */
    default List<String> bootFailures(GuestImage image) {
        return List.of();
    }

    /** The full command line of the launch (wrappers included); empty before {@link #spawn}. */
    List<String> commandLine();

    /** The guest agent, or null when the machine has none. */
    Guest guest();

    /**
     * Asks the VMM to stop gracefully and returns what it asked (for messages: "quit", "SendCtrlAltDel"…), or null
     * when it cannot be asked, so that the core kills it. The core then waits for the exit.
     */
    String requestStop(Duration timeout);

    void pause();

    /** Whether this driver saves and restores machines ({@link #saveState}, {@link Launch#restoreState()}). */
    default boolean snapshots() {
        return false;
    }

    /**
     * Saves the paused machine's state (memory and devices) into {@code file}, within {@code timeout}; the VMM may then
     * need {@link #resume()} to run on. A restore hands the file back through {@link Launch#restoreState()}.
     */
    default void saveState(Path file, Duration timeout) {
        throw new UnsupportedOperationException("saveState");
    }

    /**
     * What a saved state depends on besides the spec (the VMM's version, machine type, accelerator), as
     * {@code vmm.*} entries; a restore refuses a VMM whose entries differ. Called after {@link #preflight}.
     */
    default Map<String, String> stateInfo() {
        return Map.of();
    }

    /**
     * Whether the driver can give the guest a file as its RAM ({@link Launch#memory()}) and save a machine whose RAM
     * is such a shared file without its memory (templates: every restore maps the file copy-on-write).
     */
    default boolean memoryFiles() {
        return false;
    }

    /**
     * The MAC address of each of the machine's network cards, in the order the spec and the backend's options give
     * them (null where the VMM picks one): a restored guest still has the saved machine's, and Kiln gives it these.
     */
    default List<String> nicMacs() {
        return List.of();
    }

    void resume();

    /**
     * Closes the connections to the VMM (its control socket, API, agent); calls under way and later fail with a
     * {@code MachineClosedException} carrying {@code reason}. Called once, first thing in cleanup.
     */
    void disconnect(String reason);

    /** The VMM has exited: read what it wrote last to channels the core does not read (Firecracker's FIFOs). */
    default void drain() {}

    /** Removes what the driver made outside the work dir (a jail, cgroups). Called once, after the VMM is gone. */
    void removeLeftovers();

    /** The VMM's log beyond its stdout and stderr (Firecracker's log FIFO), or "" when it has none. */
    default String extraLog() {
        return "";
    }

    /** Waits for {@code pattern} in {@link #extraLog()}; null when there is no extra log (the core then waits on the output). */
    default MatchResult awaitExtraLog(Pattern pattern, Duration timeout) {
        return null;
    }

    /** The guest kernel panicked, as seen on the console (to tell listeners of the VMM's own events, say). */
    default void onGuestPanic(String line) {}

    /** The VMM's exit code from its own report, for a VMM whose process status Kiln cannot see (it was forked). */
    default OptionalInt reportedExitCode() {
        return OptionalInt.empty();
    }

    /** Where the host reaches guest TCP port {@code guestPort}. */
    default InetSocketAddress hostAddress(int guestPort) {
        throw new KilnException("this machine forwards no host port to guest port " + guestPort);
    }

    /**
     * Checks run once the machine stopped (Firecracker's opt-in API-duration and memory checks); throws to fail the
     * stop that ran them. Called after cleanup, at most once with failures.
     */
    default void checkAfterStop() {}
}
