package dev.kiln.vmm;

import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.os.Posix;
import dev.kiln.os.Spawn;
import dev.kiln.support.Deadline;
import dev.kiln.support.VmmProcess;
import dev.kiln.vmm.spi.Launch;
import dev.kiln.vmm.spi.VmmDriver;

import java.time.Duration;
import java.util.List;
import java.util.function.Consumer;

/**
 * A bash script standing in for a VMM, so that the machine core's states can be driven through every path,
 * including those a real VMM takes only rarely (dying before it is up, ignoring a stop, an Error in bring-up).
 * The script is a real process under the real lifeline: only the VMM's behaviour is scripted. It prints
 * {@code UP} on its console once "up", and what it does on SIGTERM is the test's choice.
 */
final class ShellVmm implements VmmDriver {
    /** Exits 0 on SIGTERM. */
    static final String POLITE = "trap 'exit 0' TERM; echo UP; while :; do sleep 1 & wait; done";
    /** Ignores SIGTERM. */
    static final String STUBBORN = "trap '' TERM; echo UP; while :; do sleep 1 & wait; done";

    private final String script;
    private volatile VmmProcess process;
    private volatile Launch launch;
    volatile Consumer<Deadline> bringUpHook = d -> {};
    volatile int disconnects;

    ShellVmm(String script) {
        this.script = script;
    }

    static Machine machine(String script) {
        return new Machine(MachineSpec.builder().noGuest().shutdownTimeout(Duration.ofSeconds(5)).build(), new ShellVmm(script));
    }

    /** The core around the stand-in. */
    static final class Machine extends VmmMachine {
        final ShellVmm vmm;

        Machine(MachineSpec spec, ShellVmm vmm) {
            super(spec, vmm);
            this.vmm = vmm;
        }

        VmmProcess process() {
            return vmm.process;
        }
    }

    @Override
    public void preflight() {}

    @Override
    public GuestImage defaultImage() {
        throw new KilnException("the shell stand-in boots no image");
    }

    @Override
    public VmmProcess spawn(Launch launch) {
        this.launch = launch;
        Launch.SocketPair console = launch.socketPair("console");
        launch.console().attach(console.ours());
        try {
            process = launch.spawn(commandLine(), Spawn.Redirect.fd(console.theirs()), List.of(), "");
            return process;
        } finally {
            console.theirs().close();
        }
    }

    @Override
    public void bringUp(Deadline deadline) {
        launch.console().cursorAtStart().await("UP", deadline.remaining());
        bringUpHook.accept(deadline);
    }

    @Override
    public List<String> commandLine() {
        return List.of("/bin/bash", "-c", script);
    }

    @Override
    public Guest guest() {
        return null;
    }

    @Override
    public String requestStop(Duration timeout) {
        return process.signal(Posix.SIGTERM) ? "SIGTERM" : null;
    }

    /** Like QEMU's {@code stop}, returns once the VMM is stopped (a signal is delivered a moment after it is sent). */
    @Override
    public void pause() {
        process.signal(Posix.SIGSTOP);
        awaitStopped(true);
    }

    @Override
    public void resume() {
        process.signal(Posix.SIGCONT);
        awaitStopped(false);
    }

    void awaitStopped(boolean stopped) {
        Deadline d = Deadline.after(Duration.ofSeconds(10));
        while (process.isStopped() != stopped) {
            if (d.expired()) throw new KilnException("the shell VMM is " + (stopped ? "not stopped" : "still stopped") + " after 10 s");
            try {
                Thread.sleep(1); // the state in /proc is all there is to watch
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KilnException("interrupted");
            }
        }
    }

    @Override
    public void disconnect(String reason) {
        disconnects++;
    }

    @Override
    public void removeLeftovers() {}
}
