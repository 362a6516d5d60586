package dev.kiln.junit;

import dev.kiln.Machine;
import dev.kiln.Snapshot;
import dev.kiln.StartTimings;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.time.Duration;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicBoolean;

/** One machine the extension owns: started (and so awaited), timed and closed once. */
final class ManagedVm {
    private static final Logger LOG = LoggerFactory.getLogger(KilnExtension.class);

    private final String label;
    private final Machine machine;
    private final AtomicBoolean closed = new AtomicBoolean();
    private volatile boolean started;

    ManagedVm(String label, Machine machine) {
        this.label = label;
        this.machine = machine;
    }

    /** Where the machine was declared, e.g. {@code @Vm WebTest.server}. */
    String label() { return label; }

    Machine machine() { return machine; }

    boolean started() { return started; }

    /** Whether the VMM was ever spawned, so that there is something to show. */
    boolean spawned() { return machine.startTimings().spawnedAfter().isPresent(); }

    /** Starts the machine, or restores it from {@code template} when not null; it returns once it is ready. */
    void start(Snapshot template) {
        if (template != null) machine.startFrom(template);
        else machine.start();
        started = true;
    }

    /** Closes the machine once and logs how long each phase took. */
    void close() {
        if (!closed.compareAndSet(false, true)) return;
        long t0 = System.nanoTime();
        try {
            machine.close();
        } finally {
            if (spawned()) LOG.info("{} ({}): {}", label, machine.id(), timings(Duration.ofNanos(System.nanoTime() - t0)));
        }
    }

    /** Spawned, VMM up and ready counted from the start; teardown on its own. */
    String timings(Duration teardown) {
        StartTimings t = machine.startTimings();
        return "spawned " + ms(t.spawnedAfter()) + ", VMM up " + ms(t.vmmUpAfter()) + ", ready " + ms(t.readyAfter())
                + (teardown != null ? ", teardown " + ms(Optional.of(teardown)) : "");
    }

    private static String ms(Optional<Duration> d) {
        return d.map(x -> x.toMillis() + " ms").orElse("-");
    }

    @Override
    public String toString() {
        return label + " (" + machine.id() + ")";
    }
}
