package dev.kiln.junit;

import dev.kiln.KilnException;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.Deadline;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/** One machine the extension owns: started, awaited, timed and closed once. */
final class ManagedVm {
    private static final Logger LOG = LoggerFactory.getLogger(KilnExtension.class);

    private final String label;
    private final QemuMachine machine;
    private final AtomicBoolean closed = new AtomicBoolean();
    private volatile boolean started;
    private volatile long startNanos;
    private volatile long guestReadyNanos = -1;

    ManagedVm(String label, QemuMachine machine) {
        this.label = label;
        this.machine = machine;
    }

    /** Where the machine was declared, e.g. {@code @Vm WebTest.server}. */
    String label() { return label; }

    QemuMachine machine() { return machine; }

    boolean started() { return started; }

    /** Whether QEMU was ever spawned, so that there is something to show. */
    boolean spawned() { return !machine.commandLine().isEmpty(); }

    void start() {
        startNanos = System.nanoTime();
        machine.start();
        started = true;
    }

    /** The image's ready marker on the console (if it has one), then the agent (if there is one). */
    void awaitReady(String readyMarker, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        if (readyMarker != null) machine.console().await(readyMarker, timeout);
        if (hasAgent()) machine.guest().awaitReady(deadline.remaining());
        guestReadyNanos = System.nanoTime() - startNanos;
    }

    private boolean hasAgent() {
        try {
            machine.guest();
            return true;
        } catch (KilnException e) {
            return false; // built with agent(false)
        }
    }

    /** Closes the machine once and logs how long each phase took. */
    void close() {
        if (!closed.compareAndSet(false, true)) return;
        long t0 = System.nanoTime();
        try {
            machine.close();
        } finally {
            if (spawned()) LOG.info("{} ({}): {}", label, machine.id(), timings(System.nanoTime() - t0));
        }
    }

    /** Spawn, QMP ready and guest ready counted from the start; teardown on its own. */
    String timings(long teardownNanos) {
        QemuMachine.Timings t = machine.timings();
        return "spawn " + ms(t.spawnNanos) + ", QMP ready " + ms(t.qmpReadyNanos) + ", guest ready "
                + ms(guestReadyNanos) + (teardownNanos >= 0 ? ", teardown " + ms(teardownNanos) : "");
    }

    private static String ms(long nanos) {
        return nanos <= 0 ? "-" : TimeUnit.NANOSECONDS.toMillis(nanos) + " ms";
    }

    @Override
    public String toString() {
        return label + " (" + machine.id() + ")";
    }
}
