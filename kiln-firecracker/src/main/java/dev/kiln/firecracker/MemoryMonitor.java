package dev.kiln.firecracker;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.function.IntSupplier;

/**
 * Samples the VMM's resident memory (VmRSS) on a virtual thread and records each time it exceeds the
 * guest's memory by more than a threshold: Firecracker's own overhead should stay small, so a growing
 * surplus is a leak. A sampler, so it polls, at an interval the caller chooses.
 */
public final class MemoryMonitor {
    private static final Logger LOG = LoggerFactory.getLogger(MemoryMonitor.class);
    private static final int KEPT = 10;

    private final long pid;
    private final IntSupplier guestMemoryMib;
    private final int thresholdMib;
    private final Duration interval;
    private final String name;
    private final List<String> exceedances = new ArrayList<>();
    private int exceedCount;
    private long maxRssKib;
    private long samples;
    private volatile boolean stopped;
    private Thread thread;

    private MemoryMonitor(long pid, IntSupplier guestMemoryMib, int thresholdMib, Duration interval, String name) {
        this.pid = pid;
        this.guestMemoryMib = guestMemoryMib;
        this.thresholdMib = thresholdMib;
        this.interval = interval;
        this.name = name;
    }

    /** Starts sampling {@code pid}; {@code guestMemoryMib} returns the guest's size, or a negative number to skip a sample. */
    public static MemoryMonitor start(long pid, IntSupplier guestMemoryMib, int thresholdMib, Duration interval, String name) {
        MemoryMonitor m = new MemoryMonitor(pid, guestMemoryMib, thresholdMib, interval, name);
        m.thread = Thread.ofVirtual().name("kiln-memory-monitor-" + name).start(m::run);
        return m;
    }

    private void run() {
        Path status = Path.of("/proc", Long.toString(pid), "status");
        while (!stopped) {
            long rssKib = rssKib(status);
            if (rssKib < 0) return; // the process is gone
            int guest = guestMemoryMib.getAsInt();
            if (guest >= 0) record(rssKib, guest);
            try {
                Thread.sleep(interval);
            } catch (InterruptedException e) {
                return;
            }
        }
    }

    private synchronized void record(long rssKib, int guestMib) {
        samples++;
        maxRssKib = Math.max(maxRssKib, rssKib);
        long overMib = rssKib / 1024 - guestMib;
        if (overMib > thresholdMib) {
            exceedCount++;
            if (exceedances.size() < KEPT) {
                exceedances.add("VMM " + name + " RSS " + rssKib / 1024 + " MiB exceeds guest memory " + guestMib
                        + " MiB by " + overMib + " MiB (threshold " + thresholdMib + " MiB)");
            }
        }
    }

    /** VmRSS in KiB, or -1 when the process is gone. */
    static long rssKib(Path status) {
        try {
            for (String line : Files.readAllLines(status)) {
                if (line.startsWith("VmRSS:")) return Long.parseLong(line.substring(6).trim().split("\\s+")[0]);
            }
            return 0; // a zombie has no VmRSS line
        } catch (IOException | NumberFormatException e) {
            return -1;
        }
    }

    public void stop() {
        stopped = true;
        if (thread != null) {
            thread.interrupt();
            try {
                thread.join(Duration.ofSeconds(5));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        LOG.debug("memory monitor of {}: {} samples, max RSS {} KiB, {} over the threshold", name, samples(), maxRssKib(), exceedCount);
    }

    public synchronized long samples() { return samples; }

    public synchronized long maxRssKib() { return maxRssKib; }

    /** The first samples over the threshold, and a count of the rest. */
    public synchronized List<String> exceedances() {
        List<String> out = new ArrayList<>(exceedances);
        if (exceedCount > exceedances.size()) out.add("… and " + (exceedCount - exceedances.size()) + " more samples over the threshold");
        return out;
    }
}
