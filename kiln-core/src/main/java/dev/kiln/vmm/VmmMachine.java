package dev.kiln.vmm;

import dev.kiln.AbnormalShutdownException;
import dev.kiln.Backend;
import dev.kiln.Console;
import dev.kiln.Drive;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.ExitStatus;
import dev.kiln.Guest;
import dev.kiln.GuestProcess;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineCancelledException;
import dev.kiln.MachineClosedException;
import dev.kiln.MachineSpec;
import dev.kiln.MachineState;
import dev.kiln.Probe;
import dev.kiln.Snapshot;
import dev.kiln.SnapshotException;
import dev.kiln.SshChannel;
import dev.kiln.StartTimings;
import dev.kiln.StateChange;
import dev.kiln.Text;
import dev.kiln.WaitTimeoutException;
import dev.kiln.agent.QgaGuest;
import dev.kiln.disk.PreparedDrives;
import dev.kiln.os.Posix;
import dev.kiln.support.Deadline;
import dev.kiln.support.VmmProcess;
import dev.kiln.support.WorkDir;
import dev.kiln.vmm.spi.Launch;
import dev.kiln.vmm.spi.SshConnector;
import dev.kiln.vmm.spi.VmmDriver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Supplier;
import java.util.regex.MatchResult;
import java.util.regex.Pattern;

/**
 * The one lifecycle of every Kiln machine, whatever its VMM: a {@link VmmDriver} says how to spawn the VMM, bring
 * it up, ask it to stop and what to clean; this class does the rest, once. One lock guards the state, which moves
 * only along {@link MachineState#next()}; {@link #transitions()} records every step with its reason.
 *
 * <ul>
 *   <li>{@code start()} runs once: preflight, work dir, spawn under the lifeline, bring-up, readiness probes. Any
 *       failure ({@code Throwable} included) cleans everything up and ends in FAILED.</li>
 *   <li>Stopping — {@code shutdown}, {@code kill}, {@code awaitExit}, {@code close}, a cancellation, or the VMM
 *       exiting by itself — moves to STOPPING, then cleans up exactly once (connections closed with the reason,
 *       VMM killed if need be, console drained, lifeline released, the driver's leftovers and the work dir removed)
 *       and ends in EXITED. A second caller waits for the first.</li>
 *   <li>Calls on a stopping or stopped machine fail with {@link MachineClosedException} saying why it stopped, or
 *       {@link MachineCancelledException} when it was cancelled.</li>
 * </ul>
 */
public abstract class VmmMachine implements Machine {
    private static final Logger LOG = LoggerFactory.getLogger(VmmMachine.class);
    private static final AtomicInteger COUNTER = new AtomicInteger();
    /** What Linux prints when it panics. */
    public static final String KERNEL_PANIC = "Kernel panic - not syncing";
    /** How long a VMM that failed to start is given to exit by itself, so its last words make the report. */
    private static final Duration LAST_WORDS = Duration.ofSeconds(1);
    /** SIGKILL takes effect at once; a VMM that survives it this long is stuck in the kernel. */
    private static final Duration KILL_WAIT = Duration.ofSeconds(60);
    private static final Duration CLEANUP_WAIT = Duration.ofSeconds(120);
    /** How long a stop waits for the guest to flush its writes to disks that outlive the machine. */
    private static final Duration SYNC_LIMIT = Duration.ofSeconds(10);
    /** Saving a guest's memory is bounded by the disk: minutes for many GiB. */
    private static final Duration SNAPSHOT_LIMIT = Duration.ofMinutes(10);
    private static final Duration SHELL_LIMIT = Duration.ofSeconds(30);
    private static final Duration SSH_CONNECT_LIMIT = Duration.ofSeconds(60);
    /** Snapshot info: the exec slots whose guest shells ran, idle, in the saved guest. */
    private static final String EXEC_SHELLS = "exec.shells";

    private final MachineSpec spec;
    private final VmmDriver driver;
    private final String id;
    private final Console console;
    private final Console vmmOutput;
    private final Console.Watch panicWatch;
    private final GuestAccess access;
    private volatile SshConnector.Session ssh;                   // the SSH session, once opened
    private volatile String bootFailure;                         // the firmware's line saying it found nothing to boot

    private final ReentrantLock lock = new ReentrantLock();
    private MachineState state = MachineState.NEW;               // guarded by lock
    private final List<StateChange> transitions = new ArrayList<>(); // guarded by lock
    private String stopReason;                                   // guarded by lock: why it is stopping or stopped
    private volatile String cancelReason;                        // written under lock
    private volatile boolean closeRequested;                     // close() while starting

    private volatile Path workDir;
    private volatile PreparedDrives drives;
    private volatile List<Drive> requestedDrives = List.of();           // the spec's drives and the image's root overlay
    private volatile List<Drive> driveSpecs = List.of();                // what each attached drive was made from
    private volatile Snapshot restoring;                                 // startFrom(): the snapshot to go on from
    private volatile Launch.MemoryFile memory;                           // the guest's RAM as a file, or null
    private volatile Path template;                                      // startTemplate(): where it is saved
    private volatile boolean templateDirMade;                            // startTemplate() made that directory
    private final ReentrantLock saving = new ReentrantLock();           // held while a snapshot is taken
    private volatile VmmProcess process;
    private volatile GuestImage image;
    private volatile ExitStatus exitStatus;
    private volatile String finalLog;
    private volatile long startNanos, spawnedNanos, upNanos, readyNanos;
    private final AtomicBoolean cleanupClaimed = new AtomicBoolean();
    private final CompletableFuture<Void> cleanedUp = new CompletableFuture<>();
    private final AtomicBoolean checked = new AtomicBoolean();

    /**
     * @param spec   what to run
     * @param driver how to run it on this backend
     */
    @SuppressWarnings("exports") // backends subclass this, through the driver SPI their modules can see
    protected VmmMachine(MachineSpec spec, VmmDriver driver) {
        this.spec = spec;
        this.driver = driver;
        this.id = spec.name().orElseGet(() -> spec.backend().name().toLowerCase(java.util.Locale.ROOT) + "-"
                + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet());
        this.console = new Console(id);
        this.vmmOutput = new Console(id + "-vmm");
        this.panicWatch = console.watch(KERNEL_PANIC, this::onPanic);
        this.access = new GuestAccess(spec, id);
    }

    @Override public final String id() { return id; }

    @Override public final Backend backend() { return spec.backend(); }

    @Override public final MachineSpec spec() { return spec; }

    @Override
    public final MachineState state() {
        lock.lock();
        try {
            return state;
        } finally {
            lock.unlock();
        }
    }

    @Override
    public final List<StateChange> transitions() {
        lock.lock();
        try {
            return List.copyOf(transitions);
        } finally {
            lock.unlock();
        }
    }

    /** The VMM's name for messages: QEMU, Firecracker. */
    protected final String vmm() {
        return spec.backend().displayName();
    }

    /** Moves to {@code to}, which must be allowed from the current state; under the lock. */
    private void transition(MachineState to, String reason) {
        if (!state.next().contains(to)) {
            throw new IllegalStateException("machine " + id + ": no transition from " + state + " to " + to + " (" + reason + ")");
        }
        transitions.add(new StateChange(state, to, Instant.now(), reason));
        LOG.debug("{}: {} → {} ({})", id, state, to, reason);
        state = to;
    }

    // ---- start ---------------------------------------------------------------------------------------------

    @Override
    public Machine start() {
        lock.lock();
        try {
            if (state != MachineState.NEW) {
                throw new KilnException("machine " + id + " cannot start: it is " + state
                        + " (start() may be called once; make a new machine)");
            }
            transition(MachineState.STARTING, restoring != null ? "startFrom(snapshot in " + restoring.dir() + ")" : "start()");
        } finally {
            lock.unlock();
        }
        startNanos = System.nanoTime();
        try {
            driver.preflight();
            if (spec.bootsGuest()) {
                image = spec.image().orElseGet(driver::defaultImage);
                image.validate();
                if (!spec.shares().isEmpty() && !image.agent() && !access.viaSsh(image)) {
                    throw new KilnException("shares: Kiln mounts them through the guest's agent or SSH, and " + image.description()
                            + " has no agent: give the spec cloudInit(...) or ssh(...)");
                }
                access.checkShares();
            }
            List<Drive> wanted = drivesOf(image);
            Snapshot from = restoring;
            if (from != null) {
                Snapshots.check(from, Snapshots.describe(spec, image, wanted, driver.stateInfo()));
                wanted = Snapshots.drivesFrom(from, wanted);
                memory = Snapshots.memoryOf(from, driver.memoryFiles());
            }
            workDir = WorkDir.create(spec.workDirBase(), "kiln-" + id + "-");
            requestedDrives = drivesOf(image);
            if (spec.bootsGuest()) {
                wanted = new ArrayList<>(wanted);
                wanted.addAll(access.extraDrives(workDir, !driver.sharedFolders()));
            }
            driveSpecs = List.copyOf(wanted);
            drives = PreparedDrives.prepare(wanted, workDir, driver.rawDrivesOnly());
            for (String literal : driver.bootFailures(image)) watchBootFailure(literal);
            Launch.SocketPair output = Launch.socketPair(workDir, "vmm-output");
            try {
                vmmOutput.attach(output.ours());
                vmmOutput.teeTo(workDir.resolve("vmm.log"));
                process = driver.spawn(new Launch(id, spec, image, workDir, drives.attached(), console, output.theirs(), this::vmmState,
                        from != null ? from.dir().resolve(Snapshot.STATE) : null, memory));
            } finally {
                output.theirs().close(); // the VMM has its own copy
            }
            spawnedNanos = System.nanoTime() - startNanos;
            // A VMM that dies while starting ends the waits on it at once, saying how it ended.
            process.onExit().whenCompleteAsync((status, error) -> {
                if (state() == MachineState.STARTING) {
                    callOffStart("machine " + id + ": " + vmm() + " " + (status != null ? describeExit(status, process) : "exited")
                            + " while starting");
                }
            }, r -> Thread.ofVirtual().name("kiln-start-watch-" + id).start(r));
            armCancellation();
            checkStartCalledOff();
            driver.bringUp(Deadline.after(spec.launchTimeout()));
            if (from != null && driver.guest() instanceof QgaGuest agent) agent.adoptExecShells(execShells(from));
            upNanos = System.nanoTime() - startNanos;
            checkStartCalledOff();
            awaitReadiness();
            readyNanos = System.nanoTime() - startNanos;
            if (from != null) reidentify(from);
            lock.lock();
            try {
                checkStartCalledOff();
                transition(startsPaused() ? MachineState.PAUSED : MachineState.RUNNING, "up and ready");
            } finally {
                lock.unlock();
            }
            process.onExit().whenComplete((status, error) -> onVmmExit()); // after the transition: an early exit counts too
            return this;
        } catch (Throwable t) {
            throw failStart(t);
        }
    }

    /** Fails the start at once when the firmware says it found nothing to boot, instead of waiting out the ready timeout. */
    private void watchBootFailure(String literal) {
        Console.Watch[] watch = new Console.Watch[1];
        watch[0] = console.watch(literal, () -> {
            // On the console's reader: note the line, and call the start off elsewhere.
            if (bootFailure != null || state() != MachineState.STARTING) return;
            bootFailure = watch[0].line().orElse(literal).strip();
            Thread.ofVirtual().name("kiln-boot-failure-" + id).start(() ->
                    callOffStart("machine " + id + ": the firmware found nothing to boot (" + bootFailure + ")"));
        });
    }

    private static List<Integer> execShells(Snapshot from) {
        String listed = from.info().getOrDefault(EXEC_SHELLS, "");
        return listed.isBlank() ? List.of() : java.util.Arrays.stream(listed.split(",")).map(Integer::valueOf).toList();
    }

    @Override
    public Machine startFrom(Snapshot snapshot) {
        if (snapshot.backend() != spec.backend()) {
            throw new KilnException("the snapshot in " + snapshot.dir() + " was taken on " + snapshot.backend().displayName()
                    + ", and this machine is for " + spec.backend().displayName());
        }
        if (!spec.bootsGuest()) throw new KilnException("machine " + id + " has no guest to restore");
        requireSnapshots();
        restoring = snapshot;
        return start();
    }

    private void requireSnapshots() {
        if (!driver.snapshots()) throw new SnapshotException(vmm() + " machines cannot be saved or restored by Kiln yet");
    }

    /**
     * A restored guest is the saved machine to the byte: give it this machine's clock and identity
     * ({@link CloneIdentity}): its hostname becomes this machine's id. Logged if it cannot.
     */
    private void reidentify(Snapshot from) {
        if (!(driver.guest() instanceof QgaGuest agent) || !image.agent()) return;
        List<String[]> macs = new ArrayList<>();
        List<String> was = Snapshots.nicMacs(from), is = driver.nicMacs();
        for (int i = 0; i < Math.min(was.size(), is.size()); i++) {
            if (was.get(i) != null && is.get(i) != null && !was.get(i).equalsIgnoreCase(is.get(i))) macs.add(new String[] {was.get(i), is.get(i)});
        }
        try {
            call(() -> {
                CloneIdentity.apply(agent, id.length() <= 63 ? id : id.substring(0, 63), macs, Duration.ofSeconds(30));
                return null;
            });
        } catch (RuntimeException e) {
            LOG.warn("{}: could not give the restored guest its own clock and identity ({}); it runs as the saved one",
                    id, e.getMessage());
        }
    }

    @Override
    public final Snapshot snapshot(Path dir) {
        if (memory != null && memory.shared()) {
            throw new KilnException("snapshot(): machine " + id + " is a template in the making: its memory is "
                    + memory.file() + ", saved with Snapshot.template, not snapshot()");
        }
        return save(dir, false);
    }

    /**
     * Starts this machine as a template to be saved into {@code dir} (empty or missing), by {@link #freeze()}: where
     * the VMM can, the guest's RAM is the file {@value Snapshot#MEMORY} there, written through, so that the template's
     * restores map it copy-on-write instead of loading it.
     */
    public final Machine startTemplate(Path dir) {
        templateDirMade = !Files.exists(dir);
        makeEmptyDir(dir, "a template");
        template = dir;
        if (driver.memoryFiles()) memory = new Launch.MemoryFile(dir.resolve(Snapshot.MEMORY), true);
        return start();
    }

    /** Saves the template started by {@link #startTemplate} and kills the machine (its RAM is the template's now). */
    public final Snapshot freeze() {
        if (template == null) throw new KilnException("freeze(): machine " + id + " was not started as a template");
        try {
            return save(template, true);
        } finally {
            kill();
        }
    }

    private Snapshot save(Path dir, boolean asTemplate) {
        requireLive("snapshot()");
        if (image == null) throw new KilnException("snapshot(): machine " + id + " has no guest to save");
        if (spec.cloudInit().isPresent() || spec.sshAccess().isPresent() || !spec.shares().isEmpty()) {
            throw new SnapshotException("cannot save machine " + id + ": a guest with cloud-init, SSH access or shares cannot be"
                    + " saved yet (its SSH keys and share devices would not carry over to a restore)");
        }
        requireSnapshots();
        boolean made = asTemplate ? templateDirMade : !Files.exists(dir);
        if (!asTemplate) makeEmptyDir(dir, "a snapshot");
        saving.lock();
        boolean wasRunning = state() == MachineState.RUNNING;
        try {
            List<Integer> shells = List.of();
            if (driver.guest() instanceof QgaGuest agent) {
                if (agent.busyExecSlots() > 0) {
                    throw new SnapshotException("cannot save machine " + id + ": it runs " + agent.busyExecSlots()
                            + " process(es) started over its exec ports, whose handles a saved guest cannot take along: close them first");
                }
                // A paused guest cannot start a shell; what it runs unlisted, a restore ends before starting its own.
                if (wasRunning) {
                    try {
                        shells = call(() -> agent.readyExecShells(SHELL_LIMIT));
                    } catch (KilnException e) {
                        LOG.warn("{}: no exec shell ready in the saved guest ({}); a restore starts its own", id, e.getMessage());
                    }
                }
            }
            if (wasRunning) pause();
            Map<String, String> described = Snapshots.describe(spec, image, requestedDrives, driver.stateInfo());
            described.put(EXEC_SHELLS, shells.stream().map(String::valueOf).collect(java.util.stream.Collectors.joining(",")));
            try {
                call(() -> {
                    driver.saveState(dir.resolve(Snapshot.STATE), SNAPSHOT_LIMIT);
                    return null;
                });
            } catch (MachineClosedException | MachineCancelledException e) {
                throw e;
            } catch (KilnException e) {
                throw new SnapshotException("cannot save machine " + id + ": " + e.getMessage(), e);
            }
            Map<String, String> info = Snapshots.takeDrives(dir, described, driveSpecs, drives.attached());
            info.put("nic.macs", Snapshots.joinMacs(driver.nicMacs()));
            if (asTemplate && memory != null) {
                kill(); // the RAM file must stay as saved: nothing may run on over it
                Snapshots.takeMemory(info, memory.file());
            }
            return Snapshot.write(dir, info, spec);
        } catch (RuntimeException e) {
            if (asTemplate) kill(); // its memory is a file in dir: stop writing it before removing it
            Snapshots.removePartial(dir, made);
            throw e;
        } finally {
            try {
                if (wasRunning && !asTemplate && state() == MachineState.PAUSED) resume();
            } finally {
                saving.unlock();
            }
        }
    }

    private static void makeEmptyDir(Path dir, String what) {
        try {
            Files.createDirectories(dir);
            try (var entries = Files.list(dir)) {
                if (entries.findAny().isPresent()) throw new KilnException(dir + " is not empty; " + what + " needs a directory of its own");
            }
        } catch (IOException e) {
            throw new KilnException("cannot make " + dir + " for " + what + ": " + e.getMessage(), e);
        }
    }

    /** The spec's drives, after an overlay over the image's root disk unless the spec has its own root drive. */
    private List<Drive> drivesOf(GuestImage image) {
        List<Drive> all = new ArrayList<>();
        boolean ownRoot = spec.drives().stream().anyMatch(d -> d.id().orElse("").equals(GuestImage.ROOT_DRIVE));
        if (image != null && image.rootDisk() != null && !ownRoot) all.add(Drive.overlay(image.rootDisk()).id(GuestImage.ROOT_DRIVE));
        all.addAll(spec.drives());
        return all;
    }

    /** Fails the start when it was cancelled or closed meanwhile. */
    private void checkStartCalledOff() {
        String cancelled = cancelReason;
        if (cancelled != null) throw new MachineCancelledException("machine " + id + " was cancelled while starting (" + cancelled + ")", null);
        if (closeRequested) throw new MachineClosedException("machine " + id + " was closed while starting");
    }

    /** Whether the machine starts with its CPUs stopped (QEMU's {@code -S}). */
    protected boolean startsPaused() {
        return false;
    }

    private void awaitReadiness() {
        if (!spec.bootsGuest()) return;
        // A restored guest is past its ready marker: without probes of the spec's own, its agent is what to await.
        // The image's marker was printed before the snapshot: for a restore, imageReady() means the agent.
        List<Probe> restored = image.agent() ? List.of(Probe.agent()) : List.of();
        List<Probe> probes = spec.readiness().orElse(restoring != null ? restored : List.of(Probe.imageReady()));
        if (restoring != null) {
            probes = probes.stream().flatMap(p -> p == Probe.imageReady() ? restored.stream() : java.util.stream.Stream.of(p)).toList();
        }
        Deadline deadline = Deadline.after(spec.readyTimeout());
        if (access.viaSsh(image)) {
            ssh = call(() -> openSsh(deadline.remaining()));
            // A start called off while this connected found no session to abort: it goes now, and the start with it.
            VmmProcess vmm = process;
            if (cancelReason != null || closeRequested || bootFailure != null || !vmm.isAlive()) {
                ssh.abort();
                checkStartCalledOff();
                throw new KilnException("machine " + id + ": " + vmm() + " is no longer running"
                        + (bootFailure != null ? " (" + bootFailure + ")" : ""));
            }
        }
        for (Probe p : probes) {
            call(() -> {
                p.await(this, deadline.remaining());
                return null;
            });
        }
        if (restoring == null && spec.cloudInit().isPresent()) {
            call(() -> {
                access.awaitCloudInit(guest(), deadline.remaining());
                return null;
            });
        }
        if (!spec.shares().isEmpty()) {
            call(() -> {
                access.mountShares(guest(), drives.attached(), ssh != null ? ssh.user() : "root", deadline.remaining());
                return null;
            });
        }
    }

    /** Connects, trying again until sshd answers; a VMM that is gone (or a start called off) ends the tries at once. */
    private SshConnector.Session openSsh(Duration timeout) {
        return access.connect(() -> {
            VmmProcess p = process;
            if (bootFailure != null || p == null || !p.isAlive()) {
                throw new KilnException("machine " + id + ": " + vmm() + " is no longer running, so its sshd cannot answer");
            }
            if (state() == MachineState.STARTING) checkStartCalledOff();
            return spec.sshAt().orElseGet(() -> driver.hostAddress(access.sshPort()));
        }, timeout, this::consoleSection);
    }

    @Override
    public final SshChannel ssh() {
        SshConnector.Session s = ssh;
        if (s == null) {
            requireLive("ssh()");
            if (!spec.sshPossible()) {
                throw new KilnException("machine " + id + " has no SSH access: give its spec cloudInit(...) (Kiln's key) or ssh(access)");
            }
            synchronized (access) {
                if (ssh == null) ssh = call(() -> openSsh(SSH_CONNECT_LIMIT));
                s = ssh;
            }
            if (cleanupClaimed.get()) { // the machine went while this connected: cleanup may have missed the session
                s.abort();
                throw new MachineClosedException("machine " + id + " stopped while its SSH session opened");
            }
        }
        return new GuardedSsh(s);
    }

    private RuntimeException failStart(Throwable t) {
        Integer code = null;
        VmmProcess p = process;
        if (p != null) {
            var st = p.awaitExit(LAST_WORDS);
            if (st.isEmpty()) p.kill();
            else if (p.ownStatus()) code = st.get().shellCode();
        }
        cleanup("start failed: " + t);
        if (t instanceof Error e) throw e;
        String cancelled = cancelReason;
        if (cancelled != null) {
            return new MachineCancelledException("machine " + id + " was cancelled while starting (" + cancelled + ")", t);
        }
        if (closeRequested) return new MachineClosedException("machine " + id + " was closed while starting", t);
        if (t instanceof MachineClosedException m) return m;
        if (t instanceof LaunchException l) return l;
        String panic = panicWatch.line().map(l -> "; the guest kernel panicked (" + l + ")").orElse("");
        String why = bootFailure != null ? "the firmware found nothing to boot on " + image.description() + " (its console: '"
                + bootFailure + "'); is the disk bootable, and for this firmware (" + spec.firmware() + ")?" : t.getMessage();
        return new LaunchException(vmm() + " launch of " + id + " failed: " + why + panic,
                driver.commandLine(), code, finalLog + consoleSection(), t);
    }

    private String consoleSection() {
        String tail = console.tail(2000);
        return tail.isBlank() ? "" : "\n[console]\n" + tail;
    }

    // ---- cancellation ----------------------------------------------------------------------------------------

    private void armCancellation() {
        spec.cancelToken().ifPresent(token -> token.whenCompleteAsync((v, e) -> cancel("its cancel token completed"
                + (e != null ? " exceptionally (" + e + ")" : "")), r -> Thread.ofVirtual().name("kiln-cancel-" + id).start(r)));
        spec.timeLimit().ifPresent(limit -> Thread.ofVirtual().name("kiln-time-limit-" + id).start(() -> {
            if (process.awaitExit(limit).isEmpty()) cancel("its time limit of " + Text.human(limit) + " passed");
        }));
    }

    @Override
    public final void cancel(String reason) {
        lock.lock();
        try {
            if (cancelReason != null || !(state == MachineState.STARTING || state.isLive())) return;
            cancelReason = reason;
        } finally {
            lock.unlock();
        }
        LOG.info("{}: cancelled: {}", id, reason);
        if (state() == MachineState.STARTING) {
            callOffStart("machine " + id + " was cancelled while starting: " + reason);
        } else {
            kill();
        }
    }

    @Override
    public final Optional<String> cancellation() {
        return Optional.ofNullable(cancelReason);
    }

    // ---- calls on a running machine -----------------------------------------------------------------------

    /**
     * Runs a call on the machine: a failure caused by a cancellation becomes {@link MachineCancelledException},
     * one caused by the machine stopping becomes {@link MachineClosedException} saying why it stopped.
     */
    protected final <T> T call(Supplier<T> action) {
        try {
            return action.get();
        } catch (RuntimeException e) {
            throw translate(e);
        }
    }

    /** A process handle whose failures say when the machine was closed or cancelled meanwhile. */
    private GuestProcess handle(GuestProcess p) {
        return new GuestProcess() {
            @Override public long pid() { return p.pid(); }
            @Override public List<String> argv() { return p.argv(); }
            @Override public java.io.InputStream stdout() { return p.stdout(); }
            @Override public java.io.InputStream stderr() { return p.stderr(); }
            @Override public java.io.OutputStream stdin() { return p.stdin(); }
            @Override public boolean isAlive() { return p.isAlive(); }
            @Override public OptionalInt exitCode() { return p.exitCode(); }
            @Override public int waitFor(Duration timeout) { return call(() -> p.waitFor(timeout)); }
            @Override public void signal(int signal) { call(() -> { p.signal(signal); return null; }); }
            @Override public void kill() { call(() -> { p.kill(); return null; }); }
            @Override public void close() { call(() -> { p.close(); return null; }); }
            @Override public String toString() { return p.toString(); }
        };
    }

    private RuntimeException translate(RuntimeException e) {
        if (e instanceof MachineCancelledException) return e;
        String cancelled = cancelReason;
        if (cancelled != null) return new MachineCancelledException("machine " + id + " was cancelled (" + cancelled + ")", e);
        if (e instanceof MachineClosedException) return e;
        String reason;
        lock.lock();
        try {
            if (state.isLive() || state == MachineState.STARTING || state == MachineState.NEW) return e;
            reason = stopReason;
        } finally {
            lock.unlock();
        }
        return new MachineClosedException("machine " + id + " is closed (" + reason + "): " + e.getMessage(), e);
    }

    /** Fails unless the VMM runs (RUNNING, PAUSED or PANICKED), naming the state. */
    protected final void requireLive(String what) {
        String cancelled = cancelReason;
        if (cancelled != null) throw new MachineCancelledException("machine " + id + " was cancelled (" + cancelled + ")", null);
        lock.lock();
        try {
            if (state.isLive()) return;
            if (state == MachineState.NEW || state == MachineState.STARTING) {
                throw new KilnException("cannot " + what + ": machine " + id + " is " + state + ", not running");
            }
            throw new MachineClosedException("cannot " + what + ": machine " + id + " is " + state + " (" + stopReason + ")");
        } finally {
            lock.unlock();
        }
    }

    @Override
    public final void pause() {
        requireLive("pause()");
        if (state() == MachineState.PAUSED) return;
        call(() -> {
            driver.pause();
            return null;
        });
        lock.lock();
        try {
            if (state == MachineState.RUNNING) transition(MachineState.PAUSED, "pause()");
        } finally {
            lock.unlock();
        }
    }

    @Override
    public final void resume() {
        requireLive("resume()");
        if (saving.isLocked() && !saving.isHeldByCurrentThread()) {
            throw new KilnException("cannot resume(): machine " + id + " is being saved (snapshot()); it resumes when that is done");
        }
        if (state() == MachineState.RUNNING) return;
        call(() -> {
            driver.resume();
            return null;
        });
        lock.lock();
        try {
            if (state == MachineState.PAUSED) transition(MachineState.RUNNING, "resume()");
        } finally {
            lock.unlock();
        }
    }

    @Override
    public final Guest guest() {
        SshConnector.Session s = ssh;
        if (s != null && (access.viaSsh(image) || driver.guest() == null)) return new GuardedSsh(s);
        Guest g = driver.guest();
        if (g == null) {
            throw new KilnException("machine " + id + " has no guest agent"
                    + (state() == MachineState.NEW ? " yet: start it first" : " (its image runs none, or it boots no guest)"));
        }
        return new GuardedGuest(g);
    }

    /** A guest whose failures say when the machine was closed or cancelled meanwhile. */
    private class GuardedGuest implements Guest {
        private final Guest g;

        GuardedGuest(Guest g) { this.g = g; }

        @Override public Guest awaitReady(Duration timeout) { call(() -> g.awaitReady(timeout)); return this; }
        @Override public ExecResult exec(ExecRequest request) { return call(() -> g.exec(request)); }
        @Override public GuestProcess start(ExecRequest request) { return handle(call(() -> g.start(request))); }
        @Override public void copyIn(Path hostFile, String guestPath) { call(() -> { g.copyIn(hostFile, guestPath); return null; }); }
        @Override public void copyOut(String guestPath, Path hostFile) { call(() -> { g.copyOut(guestPath, hostFile); return null; }); }
        @Override public void shutdown() { call(() -> { g.shutdown(); return null; }); }
        @Override public String toString() { return g.toString(); }
    }

    /** The machine's SSH session for its user, guarded likewise; its close() leaves it open: it ends with the machine. */
    private final class GuardedSsh extends GuardedGuest implements SshChannel {
        private final SshConnector.Session s;

        GuardedSsh(SshConnector.Session s) {
            super(s);
            this.s = s;
        }

        @Override public SshChannel awaitReady(Duration timeout) { super.awaitReady(timeout); return this; }
        @Override public String user() { return s.user(); }
        @Override public java.security.PublicKey hostKey() { return s.hostKey(); }
        @Override public InetSocketAddress address() { return s.address(); }
        @Override public Forward forwardLocal(int guestPort) { return call(() -> s.forwardLocal(guestPort)); }
        @Override public Forward forwardRemote(int guestPort, InetSocketAddress hostTarget) { return call(() -> s.forwardRemote(guestPort, hostTarget)); }
        @Override public void close() { /* the machine's */ }
    }

    // ---- panics ----------------------------------------------------------------------------------------------

    private void onPanic() {
        // On the console's reader, under the console's lock: quick, and no waiting here.
        String line = panicWatch.line().orElse(KERNEL_PANIC);
        lock.lock();
        try {
            if (state == MachineState.RUNNING || state == MachineState.PAUSED) transition(MachineState.PANICKED, "the guest kernel panicked: " + line);
        } finally {
            lock.unlock();
        }
        LOG.warn("the guest kernel of {} panicked: {}", id, line);
        driver.onGuestPanic(line);
    }

    /** The panic line, when the guest kernel panicked (seen on the console). */
    public final Optional<String> guestPanic() {
        return panicWatch.line();
    }

    /**
     * What became of the VMM and the guest kernel, for error messages; null while all is well. The VMM may be dying
     * as this is asked (its sockets close first), so its exit is given a moment to be seen.
     */
    private String vmmState() {
        List<String> parts = new ArrayList<>();
        guestPanic().ifPresent(line -> parts.add("the guest kernel panicked (" + line + ")"));
        VmmProcess p = process;
        if (p != null) {
            p.awaitExit(Duration.ofMillis(200)).ifPresent(st -> parts.add(vmm() + " " + id + " " + describeExit(st, p)));
        }
        return parts.isEmpty() ? null : String.join("; ", parts);
    }

    private String describeExit(ExitStatus st, VmmProcess p) {
        if (!p.ownStatus()) return "exited" + (p.killedByUs() ? " (killed by Kiln)" : "");
        return st + (p.killedByUs() && !st.exited() ? " (by Kiln)" : "");
    }

    // ---- stopping --------------------------------------------------------------------------------------------

    /**
     * Moves a live machine to STOPPING; true when this caller is to stop it. False when there is nothing to stop (it
     * stopped or is stopping) or when it is starting (then the start is called off and will clean up).
     */
    private boolean beginStop(String reason) {
        lock.lock();
        try {
            if (state == MachineState.NEW) throw new KilnException("machine " + id + " was never started");
            if (state == MachineState.STARTING) {
                closeRequested = true;
            } else if (state.isLive()) {
                transition(MachineState.STOPPING, reason);
                stopReason = reason;
                return true;
            } else {
                return false;
            }
        } finally {
            lock.unlock();
        }
        callOffStart("machine " + id + " was closed while starting (" + reason + ")");
        return false;
    }

    /** Makes a start under way fail soon: the VMM killed, connections closed with {@code why}; the starting thread cleans up. */
    private void callOffStart(String why) {
        VmmProcess p = process;
        if (p != null) p.kill();
        SshConnector.Session session = ssh;
        if (session != null) session.abort(); // a wait on it (cloud-init's, say) ends now, not at its timeout
        try {
            driver.disconnect(why);
        } catch (RuntimeException e) {
            LOG.debug("{}: disconnecting while starting: {}", id, e.toString());
        }
    }

    @Override
    public final void shutdown(Duration timeout) {
        if (!beginStop("shutdown()")) {
            awaitCleanup();
            return;
        }
        try {
            stopGracefully(timeout);
        } catch (RuntimeException e) {
            process.kill();
            cleanup("shutdown(): " + e.getMessage());
            throw new AbnormalShutdownException("could not shut " + id + " down gracefully: " + e.getMessage(), e);
        }
        cleanup("shutdown()");
        runChecks();
    }

    private void stopGracefully(Duration timeout) {
        if (!process.isAlive()) return;
        if (process.isStopped()) {
            throw new KilnException(vmm() + " " + id + " is stopped by a signal (SIGSTOP or the like) and can answer nothing");
        }
        Deadline deadline = Deadline.after(timeout); // asking and waiting share the timeout
        flushGuestWritesToKeptDisks(deadline);
        String asked = driver.requestStop(deadline.remaining());
        if (asked == null) {
            process.kill();
            return;
        }
        if (process.awaitExit(deadline.remaining()).isEmpty()) {
            throw new WaitTimeoutException(vmm() + " " + id + " to exit after " + asked, timeout, console.tail(2000));
        }
    }

    /**
     * Stopping a VMM loses what the guest has not written out yet. When a disk outlives the machine (a file used in
     * place, a kept overlay) and the guest has an agent, it is asked to {@code sync} first; a guest that cannot is
     * stopped anyway (logged).
     */
    private void flushGuestWritesToKeptDisks(Deadline deadline) {
        PreparedDrives d = drives;
        Guest g = driver.guest();
        if (d == null || g == null || state() == MachineState.PAUSED) return;
        boolean kept = d.attached().stream().anyMatch(a -> !a.readOnly() && !a.file().startsWith(workDir));
        if (!kept) return;
        Duration limit = deadline.remaining().compareTo(SYNC_LIMIT) < 0 ? deadline.remaining() : SYNC_LIMIT;
        try {
            g.exec(ExecRequest.of("sync").timeout(limit).build()).orThrow();
        } catch (RuntimeException e) {
            LOG.warn("{}: could not flush the guest's writes before stopping ({}); what it had not written is lost", id, e.getMessage());
        }
    }

    @Override
    public final void kill() {
        if (!beginStop("kill()")) {
            awaitCleanup();
            return;
        }
        process.kill();
        cleanup("kill()");
        runChecks();
    }

    @Override
    public final int awaitExit(Duration timeout) {
        MachineState s = state();
        if (s == MachineState.NEW) throw new KilnException("machine " + id + " was never started");
        if (s == MachineState.STARTING) throw new KilnException("machine " + id + " is starting: await its exit once start() has returned");
        VmmProcess p = process;
        if (p == null) throw new KilnException("machine " + id + " never spawned " + vmm() + " (" + stopReason().orElse(s.toString()) + ")");
        if (p != null && p.awaitExit(timeout).isEmpty()) {
            if (beginStop("awaitExit(): no exit within " + Text.human(timeout))) {
                p.kill();
                cleanup("awaitExit() timed out");
                throw new AbnormalShutdownException("machine " + id + " did not exit by itself within " + Text.human(timeout),
                        new WaitTimeoutException(vmm() + " " + id + " to exit", timeout, console.tail(2000)));
            }
        }
        awaitCleanup();
        runChecks();
        return exitCode().orElseThrow(() -> new KilnException(vmm() + " " + id + " exited but its exit code cannot be known"
                + " (it was forked by another process and reported none)"));
    }

    @Override
    public void close() {
        MachineState s;
        lock.lock();
        try {
            s = state;
            if (s == MachineState.NEW) {
                transition(MachineState.EXITED, "close() before start()");
                stopReason = "closed before it started";
                cleanupClaimed.set(true);
                cleanedUp.complete(null);
                return;
            }
        } finally {
            lock.unlock();
        }
        if (s.isLive() || s == MachineState.STARTING) {
            try {
                shutdown(spec.shutdownTimeout());
            } catch (AbnormalShutdownException e) {
                LOG.warn("{}", e.getMessage());
            }
            return;
        }
        awaitCleanup();
    }

    /** The VMM exited: by Kiln's hand, the guest's, or a crash. Whoever caused it, clean up. */
    private void onVmmExit() {
        String reason;
        lock.lock();
        try {
            if (!state.isLive()) return; // Kiln is stopping it, and cleans up
            reason = vmm() + " exited by itself: " + process.exitStatus().map(st -> describeExit(st, process)).orElse("exited");
            transition(MachineState.STOPPING, reason);
            stopReason = reason;
        } finally {
            lock.unlock();
        }
        Thread.ofVirtual().name("kiln-reap-" + id).start(() -> cleanup(reason));
    }

    /** Waits for a cleanup another thread is running. */
    private void awaitCleanup() {
        try {
            cleanedUp.get(CLEANUP_WAIT.toSeconds(), TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            throw new KilnException("cleanup of machine " + id + " did not finish within " + Text.human(CLEANUP_WAIT));
        } catch (ExecutionException | InterruptedException e) {
            if (e instanceof InterruptedException) Thread.currentThread().interrupt();
            throw new KilnException("waiting for the cleanup of machine " + id + " failed: " + e, e);
        }
    }

    /**
     * Runs once: connections closed with the reason, the VMM killed if it still runs, the console drained, the
     * lifeline released, the driver's leftovers and the work dir removed; then EXITED (FAILED after a failed start).
     * A second caller waits until the first has finished, so that everything is gone when it returns.
     */
    private void cleanup(String reason) {
        if (!cleanupClaimed.compareAndSet(false, true)) {
            awaitCleanup();
            return;
        }
        String why;
        lock.lock();
        try {
            if (stopReason == null) stopReason = reason;
            why = stopReason;
        } finally {
            lock.unlock();
        }
        try {
            releaseEverything("machine " + id + " is stopping: " + why);
        } finally {
            lock.lock();
            try {
                if (state == MachineState.STARTING) transition(MachineState.FAILED, "cleaned up after a failed start");
                else if (state == MachineState.STOPPING) transition(MachineState.EXITED, "cleaned up");
            } finally {
                lock.unlock();
            }
            cleanedUp.complete(null);
        }
    }

    private void releaseEverything(String closedBecause) {
        List<String> problems = new ArrayList<>();
        SshConnector.Session session = ssh;
        if (session != null) attempt(problems, session::abort); // the guest's commands go with the machine
        attempt(problems, () -> driver.disconnect(closedBecause));
        VmmProcess p = process;
        if (p != null) {
            attempt(problems, () -> {
                if (p.isAlive()) p.kill();
                exitStatus = p.awaitExit(KILL_WAIT).orElseThrow(() ->
                        new KilnException(vmm() + " " + id + " (pid " + p.pid() + ") survived SIGKILL for " + Text.human(KILL_WAIT)));
            });
        }
        console.awaitEnd(Duration.ofSeconds(2)); // the VMM is gone: read what it wrote last (a panic, say) first
        console.close();
        vmmOutput.awaitEnd(Duration.ofSeconds(2));
        vmmOutput.close();
        attempt(problems, driver::drain);
        finalLog = collectLog();
        if (p != null) p.releaseLifeline();
        attempt(problems, driver::removeLeftovers);
        PreparedDrives d = drives;
        if (d != null) attempt(problems, d::close);
        attempt(problems, () -> WorkDir.delete(workDir));
        ExitStatus st = exitStatus;
        if (st != null && p.ownStatus() && !st.exited() && !(st.signal() == Posix.SIGKILL && p.killedByUs())) {
            LOG.warn("{} {} received signal {}; command: {}", vmm(), id, st.signal(), String.join(" ", driver.commandLine()));
        }
        if (!problems.isEmpty()) LOG.warn("{}: cleanup left something behind: {}", id, String.join("; ", problems));
    }

    private static void attempt(List<String> problems, Runnable step) {
        try {
            step.run();
        } catch (RuntimeException e) {
            problems.add(e.getMessage());
        }
    }

    private String collectLog() {
        String output = vmmOutput.transcript();
        String extra = driver.extraLog();
        if (extra.isEmpty()) return output;
        if (output.isBlank()) return extra;
        return extra + (extra.endsWith("\n") ? "" : "\n") + "[output]\n" + output;
    }

    private void runChecks() {
        if (checked.compareAndSet(false, true)) driver.checkAfterStop();
    }

    // ---- what a machine shows ----------------------------------------------------------------------------

    @Override
    public final boolean isRunning() {
        VmmProcess p = process;
        return p != null && p.isAlive();
    }

    @Override
    public final OptionalInt exitCode() {
        VmmProcess p = process;
        if (p == null) return OptionalInt.empty();
        if (!p.ownStatus()) {
            if (p.isAlive()) return OptionalInt.empty();
            OptionalInt reported = driver.reportedExitCode();
            return reported.isPresent() || !p.killedByUs() ? reported : OptionalInt.of(128 + Posix.SIGKILL);
        }
        ExitStatus st = exitStatus != null ? exitStatus : p.exitStatus().orElse(null);
        return st == null ? OptionalInt.empty() : OptionalInt.of(st.shellCode());
    }

    /** How the VMM process Kiln spawned ended, once it has. */
    public final Optional<ExitStatus> exitStatus() {
        VmmProcess p = process;
        return p == null ? Optional.empty() : Optional.ofNullable(exitStatus != null ? exitStatus : p.exitStatus().orElse(null));
    }

    @Override
    public final OptionalLong pid() {
        VmmProcess p = process;
        return p != null && p.isAlive() ? OptionalLong.of(p.pid()) : OptionalLong.empty();
    }

    @Override public final Path workDir() { return workDir; }

    @Override public final Console console() { return console; }

    @Override public final Optional<GuestImage> image() { return Optional.ofNullable(image); }

    /** The full command line of the launch (wrappers included); empty before start. */
    public final List<String> commandLine() {
        return driver.commandLine();
    }

    @Override
    public final String vmmLog() {
        String f = finalLog;
        return f != null ? f : collectLog();
    }

    @Override
    public final MatchResult awaitVmmLog(Pattern pattern, Duration timeout) {
        MatchResult m = driver.awaitExtraLog(pattern, timeout);
        return m != null ? m : vmmOutput.cursorAtStart().await(pattern, timeout);
    }

    @Override
    public final InetSocketAddress hostAddress(int guestPort) {
        return driver.hostAddress(guestPort);
    }

    @Override
    public final StartTimings startTimings() {
        return new StartTimings(since(spawnedNanos), since(upNanos), since(readyNanos));
    }

    private static Duration since(long nanos) {
        return nanos == 0 ? null : Duration.ofNanos(nanos);
    }

    /** Why the machine stopped or is stopping; empty while it runs. */
    public final Optional<String> stopReason() {
        lock.lock();
        try {
            return Optional.ofNullable(stopReason);
        } finally {
            lock.unlock();
        }
    }

    @Override
    public String toString() {
        VmmProcess p = process;
        return getClass().getSimpleName() + "[" + id + ", " + state() + (p != null ? ", pid " + p.pid() : "") + "]";
    }
}
