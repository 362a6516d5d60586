package dev.kiln.support;

import dev.kiln.KilnException;
import dev.kiln.ExitStatus;
import dev.kiln.os.Fd;
import dev.kiln.os.PidFd;
import dev.kiln.os.Posix;
import dev.kiln.os.Spawn;
import dev.kiln.os.SpawnedProcess;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * A VMM process tied to this JVM by a lifeline, so that it cannot outlive it, even when the JVM is SIGKILLed.
 *
 * <p>How: the VMM is started by {@code /bin/bash}, which first forks a watcher subshell that blocks reading a pipe
 * whose only write end this JVM holds, then {@code exec}s the VMM (so the VMM keeps the shell's pid and process
 * group). When the JVM dies, the kernel closes the write end; the watcher's read returns empty, it SIGKILLs the
 * VMM, runs the backend's own clean-up ({@code onJvmDeath}: a jail, cgroups, a VMM that left the group), removes
 * the machine's work directory and SIGKILLs what is left of the VMM's process group. When Kiln is done with the VMM it writes "released" into the
 * pipe first: the watcher then only removes the work directory. The shell and the watcher are a few hundred
 * kilobytes and cost about a millisecond to start.
 *
 * <p>A VMM that another process forks (Firecracker under a jailer with {@code --daemonize} or {@code --new-pid-ns})
 * is {@link #adopt adopted} by its pid through a pidfd, so that signals never reach a process that reused the pid.
 */
public final class VmmProcess {
    // $1 = work dir; the rest is the VMM's argv. fd 3 is the lifeline. The watcher compares its parent pid with $$
    // so that it never signals a process that is no longer the VMM; it kills the VMM first and its process group
    // last, since it is in that group itself. bash, not dash: dash cannot name fds above 9, and the watcher must
    // close every fd meant for the VMM.
    private static final String SUPERVISOR = """
            w="$1"; shift
            (
              exec </dev/null >/dev/null 2>&1 %s
              IFS= read -r why <&3
              read -r _ _ _ pp _ </proc/self/stat
              if [ "$why" != released ]; then
                [ "$pp" = "$$" ] && kill -KILL $$
                %s
              fi
              rm -rf -- "$w"
              [ "$pp" = "$$" ] && kill -KILL -$$
            ) &
            exec 3<&- </dev/null
            exec "$@"
            """;

    private final SpawnedProcess process;
    /** The spawned process by pidfd: it cannot be reaped (and its pid reused) before Kiln reaps it, but signals go through the pidfd all the same. */
    private final PidFd spawned;
    private final Fd lifeline;
    private final List<String> command;
    /** Whether the spawned process forks the VMM and exits (a jailer with --daemonize or --new-pid-ns). */
    private final boolean forks;
    private final CompletableFuture<ExitStatus> exit = new CompletableFuture<>();
    private ExitStatus spawnedStatus;  // guarded by this
    private boolean adoptionOver;      // guarded by this: the forked VMM was adopted, or Kiln gave up on it
    private volatile PidFd adopted;
    private volatile boolean killedByUs;

    private VmmProcess(SpawnedProcess process, Fd lifeline, List<String> command, boolean forks) {
        this.process = process;
        this.spawned = PidFd.open(process.pid()).orElseThrow(() -> new KilnException("spawned pid " + process.pid() + " vanished"));
        this.lifeline = lifeline;
        this.command = command;
        this.forks = forks;
        process.onExit().whenComplete((status, error) -> {
            if (error != null) exit.completeExceptionally(error);
            else spawnedExited(status);
        });
    }

    private synchronized void spawnedExited(ExitStatus status) {
        spawnedStatus = status;
        completeIfGone();
    }

    /** The VMM is gone once the spawned process is, and the one it forked (if any) too, or was given up on. */
    private synchronized void completeIfGone() {
        if (spawnedStatus == null) return;
        PidFd a = adopted;
        if (!forks || (a != null ? !a.isAlive() : adoptionOver)) exit.complete(spawnedStatus);
    }

    /**
     * Starts {@code command} under the lifeline with the given stdio, and {@code extraFds} as the fds numbered
     * {@link #childFdOf}(0), (1), …. If the JVM dies, the watcher kills the VMM's process group, runs the shell
     * commands {@code onJvmDeath} (may be empty) and removes {@code workDir}.
     */
    public static VmmProcess start(List<String> command, Path workDir, Spawn.Redirect stdout, Spawn.Redirect stderr,
                                   List<Fd> extraFds, String onJvmDeath, boolean forks) {
        Fd[] pipe = Posix.pipe();
        // The watcher must not keep the VMM's extra fds open (a peer would never see EOF): close them there.
        StringBuilder closes = new StringBuilder();
        for (int i = 0; i < extraFds.size(); i++) closes.append(' ').append(childFdOf(i)).append(">&-");
        String cleanup = onJvmDeath == null || onJvmDeath.isBlank() ? ":" : onJvmDeath;
        List<String> argv = new ArrayList<>(List.of("/bin/bash", "-c", SUPERVISOR.formatted(closes, cleanup), "kiln-vmm",
                workDir.toString()));
        List<Fd> fds = new ArrayList<>();
        fds.add(pipe[0]);
        fds.addAll(extraFds);
        argv.addAll(command);
        try {
            SpawnedProcess p = Spawn.of(argv)
                    .withStdin(Spawn.Redirect.devNull())
                    .withStdout(stdout)
                    .withStderr(stderr)
                    .withExtraFds(fds)
                    .withNewSession(true)
                    .start();
            return new VmmProcess(p, pipe[1], List.copyOf(command), forks);
        } catch (RuntimeException e) {
            pipe[1].close();
            throw e;
        } finally {
            pipe[0].close();
        }
    }

    /** The number the VMM sees the {@code index}th extra fd as (fd 3 is the lifeline). */
    public static int childFdOf(int index) {
        return Spawn.childFdOf(index + 1);
    }

    /**
     * Takes the process {@code pid}, which the spawned one forked, as the VMM: from now on the VMM has exited only once
     * both have, and signals reach it through a pidfd. Fails when it is already gone.
     */
    public void adopt(long pid, java.util.function.LongPredicate isTheVmm) {
        if (!forks) throw new IllegalStateException(command.getFirst() + " was not spawned as one that forks its VMM");
        PidFd fd = PidFd.open(pid).orElseThrow(() -> new KilnException("process " + pid + " (forked by "
                + command.getFirst() + ") is already gone"));
        // Checked after the pidfd holds the process: if it is the VMM now, signals through the pidfd reach only it.
        if (!isTheVmm.test(pid) || !fd.isAlive()) {
            fd.close();
            throw new KilnException("process " + pid + " is not the VMM " + command.getFirst() + " forked (or it is gone)");
        }
        synchronized (this) {
            if (adopted != null) {
                fd.close();
                throw new IllegalStateException("the forked VMM was adopted already: pid " + adopted.pid());
            }
            adopted = fd;
            adoptionOver = true;
        }
        fd.onExit().thenRun(this::completeIfGone);
    }

    /** Whether a forked VMM was adopted. */
    public boolean adopted() {
        return adopted != null;
    }

    /** The VMM's pid: the adopted process's, else the spawned one's. */
    public long pid() {
        PidFd a = adopted;
        return a != null ? a.pid() : process.pid();
    }

    /** The pid of the process Kiln spawned (a jailer that forks, or the VMM itself). */
    public long spawnedPid() { return process.pid(); }

    public List<String> command() { return command; }

    public boolean isAlive() {
        if (process.exitStatus().isEmpty()) return true;
        if (!forks) return false;
        synchronized (this) {
            PidFd a = adopted;
            return a != null ? a.isAlive() : !adoptionOver;
        }
    }

    /** Whether the spawned process (a jailer that forks, or the VMM itself) has exited, and how. */
    public Optional<ExitStatus> spawnedExit() {
        return process.exitStatus();
    }

    /** Whether the VMM is stopped by a signal (SIGSTOP, SIGTSTP): then it can answer nothing. */
    public boolean isStopped() {
        try {
            String stat = Files.readString(Path.of("/proc/" + pid() + "/stat"), StandardCharsets.US_ASCII);
            String afterName = stat.substring(stat.lastIndexOf(')') + 2);
            return afterName.charAt(0) == 'T';
        } catch (IOException | RuntimeException e) {
            return false; // gone, or unreadable: not stopped as far as we can tell
        }
    }

    /**
     * Completes once the VMM has exited (the adopted process too), with the spawned process's status: for an adopted
     * VMM that is its parent's (the jailer's), not its own.
     */
    public CompletableFuture<ExitStatus> onExit() { return exit.copy(); }

    /** Waits up to {@code timeout} for the VMM to exit; empty while it runs. */
    public Optional<ExitStatus> awaitExit(Duration timeout) {
        try {
            return Optional.of(exit.get(timeout.toNanos(), TimeUnit.NANOSECONDS));
        } catch (TimeoutException e) {
            return Optional.empty();
        } catch (ExecutionException e) {
            throw e.getCause() instanceof KilnException k ? k : new KilnException("waiting for pid " + pid() + " failed", e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for pid " + pid() + " (" + command.getFirst() + ")", e);
        }
    }

    /** How the spawned process ended, once it has. */
    public Optional<ExitStatus> exitStatus() { return process.exitStatus(); }

    /** Whether the exit status is the VMM's own (false when the spawned process forks the VMM). */
    public boolean ownStatus() { return !forks; }

    /**
     * SIGKILL to the VMM's whole process group (a wrapper such as strace included: the group's id is the spawned
     * process's pid, which cannot be reused before Kiln reaps it) and to an adopted VMM.
     */
    public void kill() {
        killedByUs = true;
        if (process.exitStatus().isEmpty()) Posix.killGroup(process.pid(), Posix.SIGKILL);
        PidFd a;
        synchronized (this) {
            a = adopted;
            adoptionOver = true; // a VMM not adopted yet is out of reach: the lifeline's clean-up is what finds it
        }
        if (a != null) a.signal(Posix.SIGKILL);
        completeIfGone();
    }

    /** Sends a signal to the VMM alone, through its pidfd; false when it has exited. */
    public boolean signal(int signal) {
        if (signal == Posix.SIGKILL) killedByUs = true;
        PidFd a = adopted;
        return a != null ? a.signal(signal) : spawned.signal(signal);
    }

    /** True when the SIGKILL that ended it came from Kiln. */
    public boolean killedByUs() { return killedByUs; }

    /**
     * Lets the watcher go, telling it that Kiln has cleaned up; call once the VMM has exited. A forked VMM Kiln never
     * adopted may still run, out of Kiln's reach: then the watcher is not told, and runs its clean-up as if the JVM
     * had died (for a jail: finds the VMM by its pid file and kills it).
     */
    public void releaseLifeline() {
        if (!lifeline.isOpen()) return;
        try {
            if (forks && !adopted()) return;
            byte[] released = "released\n".getBytes(StandardCharsets.US_ASCII);
            Posix.writeFully(lifeline, released, 0, released.length);
        } catch (KilnException e) {
            // the watcher is gone already (killed with its process group): nothing to tell
        } finally {
            lifeline.close();
            spawned.close();
            PidFd a = adopted;
            if (a != null) a.close();
        }
    }

    @Override
    public String toString() {
        return "VmmProcess[pid " + pid() + "]";
    }
}
