package dev.kiln;

import java.time.Duration;
import java.util.List;
import java.util.regex.Pattern;

/**
 * Something a machine must show before it counts as ready, like Testcontainers' wait strategies and the NixOS
 * test driver's {@code wait_for_*}: {@code start()} awaits the spec's probes in order, sharing its ready timeout,
 * and a probe may have a shorter timeout of its own ({@link #withTimeout}). A probe that runs out of time throws
 * {@link WaitTimeoutException} saying what it awaited and what it last saw.
 *
 * <pre>{@code
 * MachineSpec.builder().forward(80)
 *     .readiness(Probe.imageReady(), Probe.tcpPort(80), Probe.http(80, "/", 200).withTimeout(Duration.ofSeconds(30)))
 * }</pre>
 *
 * Probes that need the guest run commands through its agent; the console and VMM-log probes wake on the output
 * itself, not on a timer. Probes that can only ask again (a command, a port, an HTTP status) ask with a backoff.
 */
public interface Probe {
    /** Waits until the machine shows what this probe awaits, at most {@code timeout}. */
    void await(Machine machine, Duration timeout);

    /** What the probe awaits, for messages. */
    String description();

    /** This probe, given at most {@code timeout} even when more is left of the machine's ready timeout. */
    default Probe withTimeout(Duration timeout) {
        return ReadinessProbes.limited(this, timeout);
    }

    /** The default: the image's ready marker on the console (if it has one), then its guest agent (if it has one). */
    static Probe imageReady() {
        return ReadinessProbes.IMAGE_READY;
    }

    /** {@code regex} matches the console output (anywhere since the boot began). */
    static Probe consoleMatches(String regex) {
        return consoleMatches(Pattern.compile(regex));
    }

    static Probe consoleMatches(Pattern pattern) {
        return new ReadinessProbes.ConsoleMatches(pattern);
    }

    /** {@code regex} matches the VMM's own log (Firecracker's log, QEMU's output). */
    static Probe vmmLogMatches(String regex) {
        return new ReadinessProbes.VmmLogMatches(Pattern.compile(regex));
    }

    /** The guest agent answers. */
    static Probe agent() {
        return ReadinessProbes.AGENT;
    }

    /** {@code argv} run in the guest exits with 0 (asked again, with a backoff, until it does). */
    static Probe command(String... argv) {
        return new ReadinessProbes.Command(List.of(argv));
    }

    /** Something in the guest listens on TCP {@code guestPort} (from the guest's /proc/net/tcp and tcp6). */
    static Probe tcpPort(int guestPort) {
        return new ReadinessProbes.GuestPort(guestPort);
    }

    /**
     * Something in the guest listens on TCP {@code guestPort} and the host reaches it through the machine's forward
     * (a connection from the host is accepted and not closed at once).
     */
    static Probe hostPort(int guestPort) {
        return new ReadinessProbes.HostPort(guestPort);
    }

    /** {@code GET http://<host address of guestPort><path>} answers with {@code status}. */
    static Probe http(int guestPort, String path, int status) {
        return new ReadinessProbes.Http(guestPort, path, status);
    }

    /** Every probe, in order, sharing the time. */
    static Probe allOf(Probe... probes) {
        return new ReadinessProbes.AllOf(List.of(probes));
    }
}
