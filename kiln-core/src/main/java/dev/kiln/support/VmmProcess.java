package dev.kiln.support;

import dev.kiln.os.ExitStatus;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.Spawn;
import dev.kiln.os.SpawnedProcess;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;

/**
 * A VMM process tied to this JVM by a lifeline, so that it cannot outlive it, even when the JVM is
 * SIGKILLed.
 *
 * <p>How: the VMM is started by {@code /bin/bash}, which first forks a watcher subshell that blocks reading
 * a pipe whose only write end this JVM holds, then {@code exec}s the VMM (so the VMM keeps the shell's
 * pid and process group). When the JVM dies, the kernel closes the write end; the watcher's read
 * returns, it kills the VMM's process group with SIGKILL and removes the machine's work directory.
 * When Kiln closes the lifeline itself after the VMM exited, the watcher sees its parent is gone and only
 * cleans up. The shell and the watcher are a few hundred kilobytes and cost about a millisecond to start.
 */
public final class VmmProcess {
    // $1 = work dir; the rest is the VMM's argv. fd 3 is the lifeline. The watcher compares its parent pid
    // with $$ so that it never signals a process that is no longer the VMM. bash, not dash: dash cannot
    // name fds above 9, and the watcher must close every fd meant for the VMM.
    private static final String SUPERVISOR = """
            w="$1"; shift
            (
              exec </dev/null >/dev/null 2>&1 %s
              read -r _ <&3
              read -r _ _ _ pp _ </proc/self/stat
              rm -rf -- "$w"
              [ "$pp" = "$$" ] && kill -KILL -$$
            ) &
            exec 3<&- </dev/null
            exec "$@"
            """;

    private final SpawnedProcess process;
    private final Fd lifeline;
    private final List<String> command;
    private volatile boolean killedByUs;

    private VmmProcess(SpawnedProcess process, Fd lifeline, List<String> command) {
        this.process = process;
        this.lifeline = lifeline;
        this.command = command;
    }

    /**
     * Starts {@code command} with stdout and stderr appended to {@code log}, and {@code extraFds} as the
     * fds numbered {@link #childFdOf}(0), (1), …. {@code workDir} is removed by the watcher if the JVM dies.
     */
    public static VmmProcess start(List<String> command, Path workDir, Path log, List<Fd> extraFds) {
        Fd[] pipe = Posix.pipe();
        // The watcher must not keep the VMM's extra fds open (a peer would never see EOF): close them there.
        StringBuilder closes = new StringBuilder();
        for (int i = 0; i < extraFds.size(); i++) closes.append(' ').append(childFdOf(i)).append(">&-");
        List<String> argv = new ArrayList<>(List.of("/bin/bash", "-c", SUPERVISOR.formatted(closes), "kiln-vmm",
                workDir.toString()));
        List<Fd> fds = new ArrayList<>();
        fds.add(pipe[0]);
        fds.addAll(extraFds);
        argv.addAll(command);
        try {
            SpawnedProcess p = Spawn.of(argv)
                    .withStdin(Spawn.Redirect.devNull())
                    .withStdout(Spawn.Redirect.file(log))
                    .withStderr(Spawn.Redirect.sameAsStdout())
                    .withExtraFds(fds)
                    .withNewSession(true)
                    .start();
            return new VmmProcess(p, pipe[1], List.copyOf(command));
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

    public long pid() { return process.pid(); }

    public List<String> command() { return command; }

    public boolean isAlive() { return process.exitStatus().isEmpty(); }

    public CompletableFuture<ExitStatus> onExit() { return process.onExit(); }

    public SpawnedProcess process() { return process; }

    /** SIGKILL to the VMM's whole process group (a wrapper such as strace included). */
    public void kill() {
        killedByUs = true;
        if (isAlive()) Posix.killGroup(process.pid(), Posix.SIGKILL);
    }

    /** Sends a signal to the VMM alone. */
    public boolean signal(int signal) {
        if (signal == Posix.SIGKILL) killedByUs = true;
        return process.signal(signal);
    }

    /** True when the SIGKILL that ended it came from Kiln. */
    public boolean killedByUs() { return killedByUs; }

    /** Lets the watcher go; call once the VMM has exited. */
    public void releaseLifeline() {
        lifeline.close();
    }

    @Override
    public String toString() {
        return "VmmProcess[pid " + process.pid() + "]";
    }
}
