package dev.kiln.os;

import dev.kiln.ExitStatus;
import dev.kiln.KilnException;

import java.time.Duration;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A child started by {@link Spawn}. It must be waited for ({@link #waitFor()}, {@link #onExit()} or
 * {@link #exitStatus()} until present): until it is reaped, an exited child stays a zombie holding its pid.
 *
 * <p>Exactly one path reaps the child and the status is memoized, so all ways of waiting agree. Waiting first
 * blocks without reaping (waitid WNOWAIT) and then reaps under a lock that {@link #signal} also takes, so a signal
 * can never hit another process that reused the pid.
 */
public final class SpawnedProcess {
    private final long pid;
    private final List<String> argv;
    private final ProcessHandle handle;
    private final Object reapLock = new Object();
    private final CompletableFuture<ExitStatus> exit = new CompletableFuture<>();
    private final AtomicBoolean watching = new AtomicBoolean();
    private ExitStatus status; // guarded by reapLock

    SpawnedProcess(long pid, List<String> argv) {
        this.pid = pid;
        this.argv = argv;
        // The unreaped child exists at least as a zombie, so the JDK can always find it here.
        this.handle = ProcessHandle.of(pid).orElseThrow(() -> new KilnException("spawned pid " + pid + " vanished"));
    }

    public long pid() {
        return pid;
    }

    public ProcessHandle handle() {
        return handle;
    }

    public List<String> argv() {
        return argv;
    }

    /** Blocks until the child ends and returns how. */
    public ExitStatus waitFor() {
        if (!Posix.awaitExitWithoutReaping(pid)) {
            synchronized (reapLock) {
                if (status != null) return status; // another path reaped it meanwhile
            }
            throw new KilnException("pid " + pid + " (" + argv.getFirst() + ") was reaped outside its SpawnedProcess");
        }
        return reap();
    }

    /** Waits at most {@code timeout}; empty if the child is still running then. */
    public Optional<ExitStatus> waitFor(Duration timeout) {
        try {
            return Optional.of(onExit().get(timeout.toNanos(), TimeUnit.NANOSECONDS));
        } catch (TimeoutException e) {
            return Optional.empty();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof KilnException k ? k : new KilnException("waiting for pid " + pid + " failed", e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for pid " + pid + " (" + argv.getFirst() + ")", e);
        }
    }

    /**
     * Completes when the child has ended. The blocking wait happens in the JDK's own process-reaper thread
     * ({@link ProcessHandle#onExit()}, which does not reap); the status is then collected here with waitpid.
     */
    public CompletableFuture<ExitStatus> onExit() {
        if (watching.compareAndSet(false, true) && !exit.isDone()) {
            handle.onExit().whenComplete((h, error) -> {
                try {
                    reap();
                } catch (Throwable t) {
                    exit.completeExceptionally(t);
                }
            });
        }
        return exit.copy();
    }

    /** The exit status if the child has ended (reaping it), empty while it runs; never blocks. */
    public Optional<ExitStatus> exitStatus() {
        synchronized (reapLock) {
            if (status == null) {
                ExitStatus s = Posix.waitpid(pid, true);
                if (s != null) record(s);
            }
            return Optional.ofNullable(status);
        }
    }

    /** Sends {@code signal} to the child; false if it has already ended and been reaped. */
    public boolean signal(int signal) {
        synchronized (reapLock) {
            return status == null && Posix.kill(pid, signal);
        }
    }

    private ExitStatus reap() {
        synchronized (reapLock) {
            // Only called once the child has ended, so this waitpid returns at once.
            if (status == null) record(Posix.waitpid(pid, false));
            return status;
        }
    }

    private void record(ExitStatus s) {
        status = s;
        exit.complete(s);
    }

    @Override
    public String toString() {
        ExitStatus s;
        synchronized (reapLock) {
            s = status;
        }
        return "SpawnedProcess[pid " + pid + ", " + argv.getFirst() + (s == null ? "" : ", " + s) + "]";
    }
}
