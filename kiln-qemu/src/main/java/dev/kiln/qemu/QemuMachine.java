package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.AbnormalShutdownException;
import dev.kiln.Console;
import dev.kiln.Event;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.GuestTimeoutException;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineState;
import dev.kiln.agent.QgaGuest;
import dev.kiln.os.ExitStatus;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.os.UnixSocket;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCpu;
import dev.kiln.support.VmmProcess;
import dev.kiln.support.WorkDir;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A QEMU virtual machine: the Java counterpart of QEMU's {@code QEMUMachine}. Configure with
 * {@link #builder()}, then {@link #start()}; {@link #close()} always leaves nothing behind.
 *
 * <p>Kiln listens on the QMP and console sockets and QEMU connects to them while it starts, so no console
 * output is lost and a QEMU that dies early is noticed at once. The guest agent's socket is QEMU's
 * (a server), because Kiln reconnects to it at will.
 */
public final class QemuMachine implements Machine {
    private static final Logger LOG = LoggerFactory.getLogger(QemuMachine.class);
    private static final AtomicInteger COUNTER = new AtomicInteger();
    public static final String AGENT_PORT_NAME = "org.qemu.guest_agent.0";

    private final Builder config;
    private final String id;
    private final Accelerator.Choice accel;
    private final Console console;
    private volatile MachineState state = MachineState.NEW;
    private Path workDir;
    private Path logFile;
    private Path qmpPath;
    private Path consolePath;
    private Path agentPath;
    private Path fdMonitorPath;
    private List<String> commandLine = List.of();
    private VmmProcess process;
    private Qmp qmp;
    private QgaGuest guest;
    private volatile ExitStatus exitStatus;
    private volatile String finalLog;
    private final AtomicBoolean cleanedUp = new AtomicBoolean();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final Timings timings = new Timings();

    private QemuMachine(Builder b) {
        this.config = b;
        this.id = b.name != null ? b.name : "qemu-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
        this.accel = b.accelerator.resolve();
        this.console = new Console(id);
    }

    public static Builder builder() {
        return new Builder();
    }

    /** Timestamps of the start phases, in nanoseconds since spawn began. */
    public static final class Timings {
        public volatile long spawnNanos, qmpReadyNanos, startedNanos;
    }

    @Override public String id() { return id; }

    @Override public MachineState state() { return state; }

    public Accelerator.Choice accelerator() { return accel; }

    public Timings timings() { return timings; }

    /** The full command line of the last launch (wrapper and binary included). */
    public List<String> commandLine() { return commandLine; }

    @Override
    public synchronized QemuMachine start() {
        if (state != MachineState.NEW) {
            throw new KilnException("machine " + id + " was already launched (state " + state + "); create a new one");
        }
        if (config.image != null) config.image.validate();
        checkBinary();
        state = MachineState.STARTING;
        LOG.debug("{}: accelerator {}", id, accel);
        long t0 = System.nanoTime();
        try {
            workDir = WorkDir.create(config.baseTempDir, "kiln-" + id + "-");
            Path sockDir = config.sockDir != null ? config.sockDir : workDir;
            logFile = workDir.resolve("qemu.log");
            Files.createFile(logFile);
            ServerSocketChannel qmpListener = null;
            ServerSocketChannel consoleListener = null;
            if (config.qmp) {
                SocketAddress qmpAddress = config.monitorTcp != null ? config.monitorTcp
                        : UnixDomainSocketAddress.of(qmpPath = sockDir.resolve(id + "-monitor.sock"));
                qmpListener = listen(qmpAddress);
            }
            if (config.console) consoleListener = listen(UnixDomainSocketAddress.of(
                    consolePath = sockDir.resolve(id + "-console.sock")));
            if (config.agent) agentPath = sockDir.resolve(id + "-qga.sock");
            if (config.fdPassing && config.qmp) fdMonitorPath = sockDir.resolve(id + "-fdmon.sock");
            commandLine = buildCommandLine(qmpListener);
            LOG.debug("{}: launching {}", id, String.join(" ", commandLine));
            process = VmmProcess.start(commandLine, workDir, logFile, config.extraFds);
            timings.spawnNanos = System.nanoTime() - t0;
            CompletableFuture<ExitStatus> exit = process.onExit();
            Deadline deadline = Deadline.after(config.launchTimeout);
            if (qmpListener != null) {
                SocketChannel ch = accept(qmpListener, exit, deadline, "the QMP connection");
                qmp = Qmp.connect(id, ch, deadline.remaining());
                timings.qmpReadyNanos = System.nanoTime() - t0;
            }
            if (consoleListener != null) {
                console.attach(accept(consoleListener, exit, deadline, "the console connection"));
                if (config.consoleLog != null) console.teeTo(config.consoleLog);
            }
            closeListeners();
            if (config.agent) {
                guest = new QgaGuest(this::connectAgent, () -> console.tail(2000), id);
            }
            state = config.paused ? MachineState.PAUSED : MachineState.RUNNING;
            exit.thenRun(this::onProcessExit); // after the state change, so an early death is cleaned up too
            timings.startedNanos = System.nanoTime() - t0;
            return this;
        } catch (RuntimeException | IOException e) {
            failLaunch(e);
            throw new AssertionError("unreachable");
        }
    }

    private void checkBinary() {
        String bin = config.binary;
        if (Executables.find(bin).isPresent()) return;
        String where = bin.contains("/") ? "is missing or not executable" : "not found on PATH (" + Executables.path() + ")";
        throw new LaunchException("QEMU binary '" + bin + "' " + where + "; install qemu-system-x86 or set KILN_QEMU",
                List.of(bin), null, null, null);
    }

    private ServerSocketChannel listen(SocketAddress address) throws IOException {
        ServerSocketChannel s = address instanceof UnixDomainSocketAddress
                ? ServerSocketChannel.open(StandardProtocolFamily.UNIX) : ServerSocketChannel.open();
        listeners.add(s);
        s.bind(address);
        return s;
    }

    private void closeListeners() {
        for (ServerSocketChannel s : listeners) {
            try {
                s.close();
            } catch (IOException ignored) {
                // closing
            }
        }
        listeners.clear();
        for (Path p : new Path[] {qmpPath, consolePath}) {
            try {
                if (p != null) Files.deleteIfExists(p);
            } catch (IOException ignored) {
                // best effort; the work dir goes anyway
            }
        }
    }

    /** Accepts QEMU's connection, failing at once if QEMU exits and at the deadline otherwise. */
    private SocketChannel accept(ServerSocketChannel listener, CompletableFuture<ExitStatus> exit, Deadline deadline,
                                 String what) {
        CompletableFuture<SocketChannel> accepted = new CompletableFuture<>();
        Thread t = Thread.ofVirtual().name("kiln-accept-" + id).start(() -> {
            try {
                accepted.complete(listener.accept());
            } catch (IOException e) {
                accepted.completeExceptionally(e);
            }
        });
        try {
            Object first = CompletableFuture.anyOf(accepted, exit).get(deadline.remainingNanos(), TimeUnit.NANOSECONDS);
            if (first instanceof ExitStatus st) {
                throw new KilnException("QEMU exited (" + st + ") before opening " + what);
            }
            return (SocketChannel) first;
        } catch (TimeoutException e) {
            t.interrupt();
            throw new KilnException("QEMU did not open " + what + " within " + deadline.total());
        } catch (ExecutionException e) {
            throw new KilnException("waiting for " + what + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for " + what, e);
        }
    }

    private void failLaunch(Exception cause) {
        Integer code = null;
        if (process != null) {
            // Give a dying QEMU a moment so its exit code and last words are in the report.
            var st = process.process().waitFor(Duration.ofMillis(300));
            if (st.isEmpty()) process.kill();
            else code = st.get().shellCode();
        }
        cleanup();
        state = MachineState.FAILED;
        String reason = cause.getMessage();
        throw new LaunchException("QEMU launch failed: " + reason, commandLine, code, finalLog, cause);
    }

    private List<String> buildCommandLine(ServerSocketChannel qmpListener) {
        QemuCommandLine cl = new QemuCommandLine(config.binary).wrapper(config.wrapper);
        cl.option("-display", "none").option("-vga", "none");
        if (config.defaults) cl.flag("-nodefaults").flag("-no-user-config");
        if (qmpListener != null) {
            String mon = config.monitorTcp != null
                    ? "socket,id=mon,host=" + config.monitorTcp.getHostString() + ",port=" + config.monitorTcp.getPort()
                    : "socket,id=mon,path=" + QemuCommandLine.escape(qmpPath.toString());
            cl.option("-chardev", mon).option("-mon", "chardev=mon,mode=control");
        }
        if (fdMonitorPath != null) {
            cl.option("-chardev", "socket,id=fdmon,server=on,wait=off,path=" + QemuCommandLine.escape(fdMonitorPath.toString()))
                    .option("-mon", "chardev=fdmon,mode=control");
        }
        if (config.monitorNull) cl.option("-monitor", "null");
        String machine = machineType();
        if (machine != null) cl.option("-machine", machine);
        cl.option("-accel", accel.accelerator().qemuName());
        if (accel.accelerator() == Accelerator.KVM) cl.option("-cpu", "host");
        if (config.memoryMib > 0) cl.option("-m", Integer.toString(config.memoryMib));
        if (config.cpus > 0) cl.option("-smp", Integer.toString(config.cpus));
        for (int i = 0; i < config.consoleIndex; i++) cl.option("-serial", "null");
        if (config.console) {
            cl.option("-chardev", "socket,id=console,path=" + QemuCommandLine.escape(consolePath.toString()));
            if (config.consoleDeviceType == null) cl.option("-serial", "chardev:console");
            else cl.option("-device", config.consoleDeviceType + ",chardev=console");
        }
        if (config.agent) {
            cl.option("-device", isMicrovm() ? "virtio-serial-device" : "virtio-serial-pci");
            cl.option("-chardev", "socket,id=qga,server=on,wait=off,path=" + QemuCommandLine.escape(agentPath.toString()));
            cl.option("-device", "virtserialport,chardev=qga,name=" + AGENT_PORT_NAME);
        }
        if (config.image != null) {
            cl.option("-kernel", config.image.kernel().toString());
            if (config.image.initrd() != null) cl.option("-initrd", config.image.initrd().toString());
            cl.option("-append", kernelCmdline());
            cl.flag("-no-reboot");
        }
        if (config.paused) cl.flag("-S");
        for (int i = 0; i < config.addFds.size(); i++) cl.option("-add-fd", config.addFds.get(i));
        for (int i = 0; i < config.socketNics.size(); i++) {
            String[] fdMac = config.socketNics.get(i).split(",", 2);
            cl.option("-netdev", "socket,id=sock" + i + ",fd=" + fdMac[0]);
            cl.option("-device", (isMicrovm() ? "virtio-net-device" : "virtio-net-pci") + ",netdev=sock" + i
                    + (fdMac.length > 1 ? ",mac=" + fdMac[1] : ""));
        }
        cl.raw(config.args);
        return cl.build();
    }

    private String machineType() {
        if (config.machineType != null) return config.machineType;
        return config.image != null ? "microvm,rtc=on,isa-serial=on" : null;
    }

    private boolean isMicrovm() {
        String m = machineType();
        return m != null && (m.equals("microvm") || m.startsWith("microvm,"));
    }

    /** The kernel command line: console, the TSC fix for microvm under TCG, the image's, the user's. */
    String kernelCmdline() {
        List<String> parts = new ArrayList<>();
        if (config.console && config.consoleDeviceType == null) parts.add("console=ttyS" + config.consoleIndex);
        if (isMicrovm() && accel.accelerator() == Accelerator.TCG) {
            // microvm has no HPET/PM timer: under TCG the kernel's PIT calibration of the TSC fails about
            // one boot in ten and the boot hangs. Telling it the TSC frequency avoids the calibration.
            long khz = HostCpu.tscKhz();
            if (khz > 0) parts.add("tsc_early_khz=" + khz);
        }
        if (!config.image.cmdline().isBlank()) parts.add(config.image.cmdline());
        if (config.append != null && !config.append.isBlank()) parts.add(config.append);
        return String.join(" ", parts);
    }

    private SocketChannel connectAgent() {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(agentPath));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot connect to the guest agent socket " + agentPath, e);
        }
    }

    // ---- control ---------------------------------------------------------------------------------

    /** The QMP connection; fails when QMP was switched off. */
    public Qmp qmp() {
        if (qmp == null) throw new KilnException("machine " + id + " has no QMP connection (QMP was switched off or it is not running)");
        return qmp;
    }

    /** Runs a QMP command and returns its result. Arguments are name/value pairs. */
    public JsonNode command(String command, Object... nameValues) {
        return qmp().execute(command, QmpArgs.of(nameValues));
    }

    /** Returns and clears the queued QMP events. */
    public List<Event> events() { return qmp().events(); }

    public Event awaitEvent(String name, JsonNode match, Duration timeout) {
        return qmp().awaitEvent(name, match, timeout);
    }

    @Override
    public void pause() {
        requireRunning();
        qmp().execute("stop");
        qmp().awaitEvent("STOP", null, Duration.ofSeconds(10));
        state = MachineState.PAUSED;
    }

    @Override
    public void resume() {
        requireRunning();
        qmp().execute("cont");
        qmp().awaitEvent("RESUME", null, Duration.ofSeconds(10));
        state = MachineState.RUNNING;
    }

    private void requireRunning() {
        if (state != MachineState.RUNNING && state != MachineState.PAUSED) {
            throw new KilnException("machine " + id + " is " + state + ", not running");
        }
    }

    @Override
    public void shutdown(Duration timeout) {
        if (launched()) stop(timeout, false, "could not shut " + id + " down gracefully");
    }

    /** Soft stop (quit, or just wait when {@code hasQuit}), hard kill on failure, cleanup always. */
    private void stop(Duration timeout, boolean hasQuit, String failure) {
        state = MachineState.STOPPING;
        try {
            softShutdown(timeout, hasQuit);
        } catch (RuntimeException e) {
            hardShutdown();
            throw new AbnormalShutdownException(failure + ": " + e.getMessage(), e);
        } finally {
            cleanup();
        }
    }

    @Override
    public void kill() {
        if (!launched()) return;
        state = MachineState.STOPPING;
        try {
            hardShutdown();
        } finally {
            cleanup();
        }
    }

    @Override
    public int awaitExit(Duration timeout) {
        if (process == null) throw new KilnException("machine " + id + " was never started");
        if (launched()) stop(timeout, true, "machine " + id + " did not exit by itself");
        return exitStatus.shellCode();
    }

    private boolean launched() {
        return process != null && !cleanedUp.get();
    }

    private void softShutdown(Duration timeout, boolean hasQuit) {
        if (process.isAlive() && !hasQuit) {
            if (qmp != null && qmp.state() == Qmp.State.RUNNING) {
                try {
                    qmp.execute("quit", null, timeout);
                } catch (QmpException e) {
                    // QEMU may close the socket before the reply arrives: that is a quit too.
                    if (process.isAlive() && qmp.state() == Qmp.State.RUNNING) throw e;
                }
            } else if (qmp == null) {
                process.signal(Posix.SIGTERM); // QEMU quits cleanly on SIGTERM
            } else {
                throw new KilnException("QMP is closed (" + qmp.closeReason() + ") and QEMU is still running");
            }
        }
        var st = process.process().waitFor(timeout);
        if (st.isEmpty()) {
            throw new GuestTimeoutException("QEMU " + id + " to exit" + (hasQuit ? " on its own" : " after quit"),
                    timeout, console.tail(2000));
        }
    }

    private void hardShutdown() {
        process.kill();
        if (process.process().waitFor(Duration.ofSeconds(60)).isEmpty()) {
            throw new KilnException("QEMU " + id + " (pid " + process.pid() + ") survived SIGKILL for 60 s");
        }
    }

    /** QEMU exited: by our hand, the guest's, or a crash. Clean up whoever caused it. */
    private void onProcessExit() {
        if (state == MachineState.RUNNING || state == MachineState.PAUSED) {
            Thread.ofVirtual().name("kiln-reap-" + id).start(this::cleanup);
        }
    }

    /** Runs once: closes connections, keeps the log, removes the work dir, reports a surprising death. */
    private void cleanup() {
        if (!cleanedUp.compareAndSet(false, true)) return;
        closeListeners();
        if (guest != null) guest.close();
        if (qmp != null) qmp.close();
        if (process != null) {
            if (process.isAlive()) process.kill();
            exitStatus = process.process().waitFor(Duration.ofSeconds(60)).orElse(null);
        }
        console.close();
        finalLog = readLog();
        if (process != null) process.releaseLifeline();
        WorkDir.delete(workDir);
        if (exitStatus != null && !exitStatus.exited() && !(exitStatus.signal() == Posix.SIGKILL && process.killedByUs())) {
            LOG.warn("QEMU {} received signal {}; command: {}", id, exitStatus.signal(), String.join(" ", commandLine));
        }
        if (state != MachineState.FAILED && state != MachineState.STARTING) state = MachineState.EXITED;
    }

    private String readLog() {
        try {
            return logFile != null && Files.exists(logFile) ? Files.readString(logFile, StandardCharsets.UTF_8) : "";
        } catch (IOException e) {
            return "(cannot read " + logFile + ": " + e.getMessage() + ")";
        }
    }

    @Override public boolean isRunning() { return process != null && process.isAlive(); }

    @Override
    public OptionalInt exitCode() {
        if (exitStatus != null) return OptionalInt.of(exitStatus.shellCode());
        if (process == null) return OptionalInt.empty();
        return process.process().exitStatus().map(s -> OptionalInt.of(s.shellCode())).orElse(OptionalInt.empty());
    }

    /** How QEMU ended (exit code or signal), once it has. */
    public ExitStatus exitStatus() { return exitStatus; }

    @Override
    public OptionalLong pid() {
        return isRunning() ? OptionalLong.of(process.pid()) : OptionalLong.empty();
    }

    @Override public Path workDir() { return workDir; }

    @Override public Console console() { return console; }

    @Override
    public Guest guest() {
        if (guest == null) throw new KilnException("machine " + id + " has no guest agent channel (agent(false), or not started)");
        return guest;
    }

    /** The agent client, with QGA's raw commands. */
    public QgaGuest agent() {
        return (QgaGuest) guest();
    }

    @Override
    public String vmmLog() {
        return finalLog != null ? finalLog : readLog();
    }

    /**
     * Passes an open file to QEMU over SCM_RIGHTS and names it ({@code getfd}), on a QMP monitor kept for
     * fd passing; then runs {@code thenCommand} on that same monitor, since QEMU looks fd names up per
     * monitor. Needs {@link Builder#fdPassing(boolean)}.
     */
    public JsonNode passFd(Fd fd, String fdName, String thenCommand, ObjectNode thenArguments) {
        try (Fd sock = connectFdMonitor()) {
            FdMonitor mon = FdMonitor.open(sock);
            ObjectNode args = JsonNodeFactory.instance.objectNode().put("fdname", fdName);
            mon.executeWithFd("getfd", args, fd);
            return thenCommand == null ? null : mon.execute(thenCommand, thenArguments);
        }
    }

    /** Adds an open file to an fd set ({@code add-fd} over SCM_RIGHTS); returns QEMU's answer ({@code fdset-id}, {@code fd}). */
    public JsonNode addFdToSet(Fd fd, int fdsetId, String opaque) {
        try (Fd sock = connectFdMonitor()) {
            FdMonitor mon = FdMonitor.open(sock);
            ObjectNode args = JsonNodeFactory.instance.objectNode().put("fdset-id", fdsetId);
            if (opaque != null) args.put("opaque", opaque);
            return mon.executeWithFd("add-fd", args, fd);
        }
    }

    private Fd connectFdMonitor() {
        if (fdMonitorPath == null) throw new KilnException("fd passing is off: build the machine with fdPassing(true)");
        return UnixSocket.connect(fdMonitorPath);
    }

    @Override
    public void close() {
        if (!launched()) return;
        try {
            shutdown(config.shutdownTimeout);
        } catch (AbnormalShutdownException e) {
            LOG.warn("{}", e.getMessage());
        }
    }

    @Override
    public String toString() {
        return "QemuMachine[" + id + ", " + state + (process != null ? ", pid " + process.pid() : "") + "]";
    }

    // ---- configuration ---------------------------------------------------------------------------

    /** Settings for a {@link QemuMachine}; every one has a sane default. */
    public static final class Builder {
        private String binary = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        private final List<String> args = new ArrayList<>();
        private final List<String> wrapper = new ArrayList<>();
        private String name;
        private Path baseTempDir = Path.of(System.getProperty("java.io.tmpdir"));
        private Path sockDir;
        private InetSocketAddress monitorTcp;
        private boolean qmp = true;
        private boolean monitorNull;
        private Path consoleLog;
        private Boolean console;
        private String consoleDeviceType;
        private int consoleIndex;
        private String machineType;
        private Accelerator accelerator = Accelerator.fromEnvironment();
        private int memoryMib = 256;
        private int cpus = 1;
        private GuestImage image;
        private String append;
        private Boolean agent;
        private boolean paused;
        private boolean defaults = true;
        private boolean fdPassing;
        private final List<String> addFds = new ArrayList<>();
        private final List<Fd> extraFds = new ArrayList<>();
        private final List<String> socketNics = new ArrayList<>();
        private Duration launchTimeout = Duration.ofSeconds(30);
        private Duration shutdownTimeout = Duration.ofSeconds(30);

        public Builder binary(String path) { this.binary = path; return this; }

        /** Extra QEMU arguments, appended after Kiln's. */
        public Builder args(String... more) { args.addAll(List.of(more)); return this; }

        /** A command QEMU runs under, e.g. {@code strace -f -o /tmp/trace}. */
        public Builder wrapper(String... prefix) { wrapper.addAll(List.of(prefix)); return this; }

        /** Prefix of socket and log names, and the machine's id. */
        public Builder name(String name) { this.name = name; return this; }

        public Builder baseTempDir(Path dir) { this.baseTempDir = dir; return this; }

        /** Where sockets go (unix socket paths are limited to 107 bytes); default: the work dir. */
        public Builder sockDir(Path dir) { this.sockDir = dir; return this; }

        /** QMP on a TCP address Kiln listens on, instead of a unix socket. */
        public Builder monitorTcp(InetSocketAddress address) { this.monitorTcp = address; return this; }

        /** Switches QMP off (the seed's {@code set_qmp_monitor(False)}). */
        public Builder qmp(boolean on) { this.qmp = on; return this; }

        /** Adds an unused {@code -monitor null}. */
        public Builder monitorNull() { this.monitorNull = true; return this; }

        /** Also writes the console to a file. */
        public Builder consoleLog(Path file) { this.consoleLog = file; return this; }

        /** Console on or off; default: on when a kernel is booted. */
        public Builder console(boolean on) { this.console = on; return this; }

        /**
         * The console's device ({@code isa-serial}, {@code virtconsole}…; null: {@code -serial}) and index:
         * {@code index} null serial ports come before it.
         */
        public Builder console(String deviceType, int index) {
            this.console = true;
            this.consoleDeviceType = deviceType;
            this.consoleIndex = index;
            return this;
        }

        /** The {@code -machine} value; default {@code microvm,rtc=on,isa-serial=on} for kernel boots, else QEMU's. */
        public Builder machine(String type) { this.machineType = type; return this; }

        public Builder accelerator(Accelerator a) { this.accelerator = a; return this; }

        public Builder memoryMib(int mib) {
            if (mib <= 0) throw new IllegalArgumentException("memory must be positive, got " + mib + " MiB");
            this.memoryMib = mib;
            return this;
        }

        public Builder cpus(int n) {
            if (n <= 0) throw new IllegalArgumentException("cpus must be positive, got " + n);
            this.cpus = n;
            return this;
        }

        /** What to boot. With no image QEMU starts without a kernel (useful with {@link #paused}). */
        public Builder image(GuestImage image) { this.image = image; return this; }

        /** The image set so far, or null: lets a caller (say, the JUnit extension) fill in a default. */
        public GuestImage image() { return image; }

        public Builder kernel(Path kernel, Path initrd) { this.image = GuestImage.of(kernel, initrd); return this; }

        /** Extra kernel arguments. */
        public Builder append(String cmdline) { this.append = cmdline; return this; }

        /** The guest agent channel (virtio-serial); default: on when a kernel is booted. */
        public Builder agent(boolean on) { this.agent = on; return this; }

        /** Starts with the CPUs stopped ({@code -S}). */
        public Builder paused(boolean on) { this.paused = on; return this; }

        /** Whether to pass {@code -nodefaults -no-user-config} (default true). */
        public Builder noDefaults(boolean on) { this.defaults = on; return this; }

        /** Adds a second QMP monitor used only for passing fds ({@link #passFd}, {@link #addFdToSet}). */
        public Builder fdPassing(boolean on) { this.fdPassing = on; return this; }

        /**
         * Hands QEMU an open file at launch ({@code -add-fd fd=N,set=S,opaque=O}); Kiln picks N. The
         * caller keeps and closes its own {@code fd}.
         */
        public Builder addFd(Fd fd, int fdset, String opaque, String opts) {
            int childFd = inheritFd(fd);
            String o = "fd=" + childFd + ",set=" + fdset + (opaque != null ? ",opaque=" + QemuCommandLine.escape(opaque) : "")
                    + (opts != null && !opts.isBlank() ? "," + opts : "");
            addFds.add(o);
            return this;
        }

        /**
         * Hands QEMU an open file at spawn and returns the number it has there, for options that take
         * {@code fd=N} (e.g. {@code -netdev socket,fd=N}). The caller keeps and closes its own {@code fd}.
         */
        public int inheritFd(Fd fd) {
            int childFd = VmmProcess.childFdOf(extraFds.size());
            extraFds.add(fd);
            return childFd;
        }

        /**
         * A virtio NIC whose frames go over {@code fd}, a connected stream socket (QEMU's
         * {@code -netdev socket,fd=N}: each frame preceded by its length, 4 bytes big-endian), e.g. one end of
         * a cable or a port of a switch. {@code mac} like {@code 52:54:00:12:34:56}, or null for QEMU's.
         */
        public Builder nic(Fd fd, String mac) {
            int childFd = inheritFd(fd);
            socketNics.add(childFd + (mac != null ? "," + mac : ""));
            return this;
        }

        public Builder launchTimeout(Duration d) { this.launchTimeout = d; return this; }

        /** How long {@link QemuMachine#close()} waits for a graceful quit before killing. */
        public Builder shutdownTimeout(Duration d) { this.shutdownTimeout = d; return this; }

        public QemuMachine build() {
            if (console == null) console = image != null;
            if (agent == null) agent = image != null;
            if (memoryMib > 1 << 22) throw new IllegalArgumentException("memory of " + memoryMib + " MiB is more than 4 TiB");
            return new QemuMachine(this);
        }

        public QemuMachine start() {
            return build().start();
        }
    }
}
