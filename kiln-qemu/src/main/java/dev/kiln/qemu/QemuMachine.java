package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.AbnormalShutdownException;
import dev.kiln.Console;
import dev.kiln.Event;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.WaitTimeoutException;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.Machine;
import dev.kiln.MachineCancelledException;
import dev.kiln.MachineState;
import dev.kiln.agent.QgaGuest;
import dev.kiln.net.Network;
import dev.kiln.net.Port;
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
import java.util.Arrays;
import java.util.List;
import java.util.Optional;
import java.util.OptionalInt;
import java.util.OptionalLong;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.concurrent.CompletionStage;
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
    /** What Linux prints when it panics. */
    static final String KERNEL_PANIC = "Kernel panic - not syncing";
    /** The user-mode network: its netdev id, range, the guest's address, the gateway and the guest's MAC. */
    public static final String USER_NETDEV = "usernet0", USER_NET = "10.42.0.0/24", USER_GUEST_IP = "10.42.0.10",
            USER_GATEWAY = "10.42.0.2", USER_MAC = "02:72:82:bf:c3:56";

    private final Builder config;
    private final String id;
    private final Accelerator.Choice accel;
    private final Console console;
    private final Console.Watch panicWatch;
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
    private final CompletableFuture<Void> cleaned = new CompletableFuture<>();
    private volatile String cancelled;          // written under stateLock
    private final Object stateLock = new Object(); // orders a cancellation against start() declaring the machine up
    private volatile Map<Integer, Integer> hostPorts = Map.of();
    private final Map<String, SocketChannel> channels = new ConcurrentHashMap<>();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private final Timings timings = new Timings();

    private QemuMachine(Builder b) {
        this.config = b;
        this.id = b.name != null ? b.name : "qemu-" + ProcessHandle.current().pid() + "-" + COUNTER.incrementAndGet();
        this.accel = b.accelerator.resolve();
        this.console = new Console(id);
        this.panicWatch = console.watch(KERNEL_PANIC, this::onPanic);
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
            List<ServerSocketChannel> channelListeners = new ArrayList<>();
            for (int i = 0; i < config.channels.size(); i++) channelListeners.add(listen(UnixDomainSocketAddress.of(channelPath(i))));
            if (config.fdPassing && config.qmp) fdMonitorPath = sockDir.resolve(id + "-fdmon.sock");
            commandLine = buildCommandLine(qmpListener);
            LOG.debug("{}: launching {}", id, String.join(" ", commandLine));
            process = VmmProcess.start(commandLine, workDir, logFile, config.extraFds);
            timings.spawnNanos = System.nanoTime() - t0;
            armCancellation();
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
            for (int i = 0; i < channelListeners.size(); i++) {
                channels.put(config.channels.get(i), accept(channelListeners.get(i), exit, deadline,
                        "channel " + config.channels.get(i)));
            }
            closeListeners();
            if (!config.forwards.isEmpty()) readForwards();
            if (config.agent) {
                guest = new QgaGuest(this::connectAgent, () -> console.tail(2000), this::vmmState, id);
            }
            synchronized (stateLock) {
                if (cancelled != null) throw new KilnException("cancelled");
                state = config.paused ? MachineState.PAUSED : MachineState.RUNNING;
            }
            exit.thenRun(this::onProcessExit); // after the state change, so an early death is cleaned up too
            timings.startedNanos = System.nanoTime() - t0;
            return this;
        } catch (RuntimeException | IOException e) {
            failLaunch(e, cancelled != null);
            throw new AssertionError("unreachable");
        }
    }

    // ---- cancellation ----------------------------------------------------------------------------

    private void armCancellation() {
        if (config.cancelToken != null) {
            // Not on the completing thread: cancelling waits for QEMU and cleans up.
            config.cancelToken.whenCompleteAsync((v, e) -> cancel("its cancel token completed"
                    + (e != null ? " exceptionally (" + e + ")" : "")), r -> Thread.ofVirtual().name("kiln-cancel-" + id).start(r));
        }
        if (config.timeLimit != null) {
            Thread.ofVirtual().name("kiln-time-limit-" + id).start(() -> {
                try {
                    if (process.process().waitFor(config.timeLimit).isEmpty()) {
                        cancel("its time limit of " + config.timeLimit + " passed");
                    }
                } catch (RuntimeException ignored) {
                    // the process is gone: nothing to limit
                }
            });
        }
    }

    /**
     * Cancels the machine: QEMU is killed and everything cleaned up; operations under way and later ones fail
     * with {@link MachineCancelledException}. Idempotent; does nothing once the machine has stopped.
     */
    public void cancel(String reason) {
        synchronized (stateLock) {
            if (process == null || cleanedUp.get() || cancelled != null) return;
            cancelled = reason;
        }
        LOG.info("{}: cancelled: {}", id, reason);
        kill();
    }

    /** Why the machine was cancelled, if it was. */
    public Optional<String> cancellation() {
        return Optional.ofNullable(cancelled);
    }

    /** Rethrows a failure caused by cancellation as {@link MachineCancelledException}. */
    private RuntimeException translate(RuntimeException e) {
        if (cancelled == null || e instanceof MachineCancelledException) return e;
        return new MachineCancelledException("machine " + id + " was cancelled (" + cancelled + ")", e);
    }

    // ---- user-mode networking --------------------------------------------------------------------

    /** Reads the forwards QEMU has bound from {@code info usernet} (ports chosen by the kernel included). */
    private void readForwards() {
        Map<Integer, Integer> found = new TreeMap<>();
        for (int[] f : boundForwards()) found.put(f[1], f[0]);
        hostPorts = Map.copyOf(found);
        LOG.debug("{}: forwards guest→host {}", id, hostPorts);
    }

    /** The TCP forwards QEMU has bound, as {host port, guest port} pairs, from {@code info usernet}. */
    private List<int[]> boundForwards() {
        String info = command("human-monitor-command", "command-line", "info usernet").asText();
        List<int[]> found = new ArrayList<>();
        // e.g. "  TCP[HOST_FORWARD]  13       127.0.0.1 40423      10.42.0.10    80     0     0"
        Matcher m = FORWARD_LINE.matcher(info);
        while (m.find()) found.add(new int[] {Integer.parseInt(m.group(1)), Integer.parseInt(m.group(2))});
        return found;
    }

    private static final Pattern FORWARD_LINE =
            Pattern.compile("TCP\\[HOST_FORWARD\\]\\s+\\d+\\s+\\S+\\s+(\\d+)\\s+\\S+\\s+(\\d+)");

    /** The host port (on 127.0.0.1) that forwards to {@code guestPort}. */
    public int hostPort(int guestPort) {
        Integer p = hostPorts.get(guestPort);
        if (p == null) {
            throw new KilnException("machine " + id + " forwards no host port to guest port " + guestPort
                    + " (forwards, guest→host: " + hostPorts + "); add one with Builder.forward or addForward");
        }
        return p;
    }

    /** All forwards, guest port → host port. */
    public Map<Integer, Integer> hostPorts() {
        return hostPorts;
    }

    /**
     * Forwards another guest TCP port while the machine runs ({@code hostfwd_add}); 0 as {@code hostPort}
     * lets the kernel pick a free one. Returns the host port.
     */
    public synchronized int addForward(int guestPort, int hostPort) {
        requireRunning();
        if (!config.userNetwork) throw new KilnException("machine " + id + " has no user-mode network: build it with userNetwork(true) or forward(...)");
        List<int[]> before = boundForwards();
        String out = command("human-monitor-command", "command-line",
                "hostfwd_add " + USER_NETDEV + " " + new Forward(guestPort, hostPort).hostfwd()).asText();
        if (!out.isBlank()) throw new KilnException("QEMU refused to forward guest port " + guestPort + ": " + out.strip());
        // The new forward is the one whose host port was not bound before (a guest port may have several).
        java.util.Set<Integer> known = new java.util.HashSet<>();
        before.forEach(f -> known.add(f[0]));
        int added = boundForwards().stream().filter(f -> f[1] == guestPort && !known.contains(f[0])).mapToInt(f -> f[0])
                .findFirst().orElseThrow(() -> new KilnException("QEMU took the forward of guest port " + guestPort
                        + " but does not list it in info usernet"));
        Map<Integer, Integer> now = new TreeMap<>(hostPorts);
        now.put(guestPort, added);
        hostPorts = Map.copyOf(now);
        return added;
    }

    // ---- channels --------------------------------------------------------------------------------

    /** The host end of a channel declared with {@link Builder#channel(String)}: bytes to and from the guest's port. */
    public SocketChannel channel(String name) {
        SocketChannel ch = channels.get(name);
        if (ch == null) throw new KilnException("machine " + id + " has no channel '" + name + "' (channels: " + channels.keySet() + ")");
        return ch;
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
        List<Path> sockets = new ArrayList<>(Arrays.asList(qmpPath, consolePath));
        for (int i = 0; i < config.channels.size() && workDir != null; i++) sockets.add(channelPath(i));
        for (Path p : sockets) {
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
                accepted.thenAccept(QemuMachine::closeQuietly); // in case QEMU connected just before it died
                throw new KilnException("QEMU exited (" + st + ") before opening " + what);
            }
            return (SocketChannel) first;
        } catch (TimeoutException e) {
            t.interrupt();
            accepted.thenAccept(QemuMachine::closeQuietly);
            throw new KilnException("QEMU did not open " + what + " within " + deadline.total());
        } catch (ExecutionException e) {
            throw new KilnException("waiting for " + what + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for " + what, e);
        }
    }

    private static void closeQuietly(SocketChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }

    private void failLaunch(Exception cause, boolean byCancellation) {
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
        if (byCancellation) throw new MachineCancelledException("machine " + id + " was cancelled while starting (" + cancelled + ")", cause);
        throw new LaunchException("QEMU launch failed: " + reason, commandLine, code, finalLog, cause);
    }

    private List<String> buildCommandLine(ServerSocketChannel qmpListener) {
        QemuCommandLine cl = new QemuCommandLine(config.binary).wrapper(config.wrapper);
        cl.option("-display", "none").option("-vga", "none");
        if (config.defaults) cl.flag("-nodefaults").flag("-no-user-config");
        if (qmpListener != null) {
            QemuOption mon = QemuOption.of("socket").set("id", "mon");
            if (config.monitorTcp != null) mon.set("host", config.monitorTcp.getHostString()).set("port", config.monitorTcp.getPort());
            else mon.set("path", qmpPath);
            cl.option("-chardev", mon.toString()).option("-mon", "chardev=mon,mode=control");
        }
        if (fdMonitorPath != null) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "fdmon").set("server", "on").set("wait", "off")
                    .set("path", fdMonitorPath).toString()).option("-mon", "chardev=fdmon,mode=control");
        }
        if (config.monitorNull) cl.option("-monitor", "null");
        String machine = machineType();
        if (machine != null) cl.option("-machine", machine);
        cl.option("-accel", accel.accelerator().qemuName());
        if (accel.accelerator() == Accelerator.KVM) cl.option("-cpu", "host");
        if (config.memoryMib > 0) cl.option("-m", Integer.toString(config.memoryMib));
        if (config.cpus > 0) cl.option("-smp", Integer.toString(config.cpus));
        String mmioOrPci = isMicrovm() ? "device" : "pci";
        if (config.rng) cl.option("-device", QemuOption.of("virtio-rng-" + mmioOrPci).set("max-bytes", 1024).set("period", 1000).toString());
        for (int i = 0; i < config.consoleIndex; i++) cl.option("-serial", "null");
        boolean virtioConsole = config.console && config.consoleDeviceType != null
                && (config.consoleDeviceType.startsWith("virtconsole") || config.consoleDeviceType.startsWith("virtserialport"));
        if (config.agent || virtioConsole || !config.channels.isEmpty()) {
            cl.option("-device", QemuOption.of("virtio-serial-" + mmioOrPci).set("max_ports", 16).toString());
        }
        if (config.console) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "console").set("path", consolePath).toString());
            if (config.consoleDeviceType == null) cl.option("-serial", "chardev:console");
            else cl.option("-device", config.consoleDeviceType + ",chardev=console");
        }
        if (config.agent) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "qga").set("server", "on").set("wait", "off")
                    .set("path", agentPath).toString());
            cl.option("-device", QemuOption.of("virtserialport").set("chardev", "qga").set("name", AGENT_PORT_NAME).toString());
        }
        for (int i = 0; i < config.channels.size(); i++) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "chan" + i).set("path", channelPath(i)).toString());
            cl.option("-device", QemuOption.of("virtserialport").set("chardev", "chan" + i)
                    .set("name", config.channels.get(i)).toString());
        }
        if (config.image != null) {
            cl.option("-kernel", config.image.kernel().toString());
            if (config.image.initrd() != null) cl.option("-initrd", config.image.initrd().toString());
            cl.option("-append", kernelCmdline());
            cl.flag("-no-reboot");
        }
        if (config.paused) cl.flag("-S");
        for (QemuOption o : config.addFds) cl.option("-add-fd", o.toString());
        String nic = "virtio-net-" + mmioOrPci;
        if (config.userNetwork) {
            QemuOption net = QemuOption.of("user").set("id", USER_NETDEV).set("net", USER_NET).set("dhcpstart", USER_GUEST_IP);
            for (Forward f : config.forwards) net.set("hostfwd", f.hostfwd());
            cl.option("-netdev", net.toString());
            cl.option("-device", QemuOption.of(nic).set("netdev", USER_NETDEV).set("mac", USER_MAC).toString());
        }
        for (int i = 0; i < config.socketNics.size(); i++) {
            SocketNic n = config.socketNics.get(i);
            cl.option("-netdev", QemuOption.of("socket").set("id", "sock" + i).set("fd", n.childFd()).toString());
            cl.option("-device", QemuOption.of(nic).set("netdev", "sock" + i).setIfPresent("mac", n.mac()).toString());
        }
        cl.raw(config.args);
        return cl.build();
    }

    private Path channelPath(int i) {
        return (config.sockDir != null ? config.sockDir : workDir).resolve(id + "-chan" + i + ".sock");
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
        if (config.console && config.consoleDeviceType != null && config.consoleDeviceType.startsWith("virtconsole")) {
            parts.add("console=hvc0");
        }
        if (config.userNetwork) parts.add("kiln.ip=" + USER_GUEST_IP + "/24," + USER_GATEWAY);
        if (isMicrovm() && accel.accelerator() == Accelerator.TCG) {
            // microvm has no HPET/PM timer: under TCG the kernel's PIT calibration of the TSC fails about
            // one boot in ten and the boot hangs. Telling it the TSC frequency avoids the calibration.
            long khz = HostCpu.tscKhz();
            if (khz > 0) parts.add("tsc_early_khz=" + khz);
        }
        // microvm has no reset device the kernel knows; a triple fault resets it, and -no-reboot turns that
        // reset (a reboot, or a panic with panic=-1) into QEMU exiting instead of a guest stuck in its reboot loop.
        if (isMicrovm()) parts.add("reboot=t");
        if (!config.image.cmdline().isBlank()) parts.add(config.image.cmdline());
        if (config.append != null && !config.append.isBlank()) parts.add(config.append);
        return String.join(" ", parts);
    }

    /**
     * What became of QEMU and the guest kernel, for error messages; null while all is well. QEMU may be
     * dying as this is asked (its sockets close first), so its exit is given a moment to be seen.
     */
    private String vmmState() {
        List<String> parts = new ArrayList<>();
        guestPanic().ifPresent(line -> parts.add("the guest kernel panicked (" + line + ")"));
        if (process != null) {
            process.process().waitFor(Duration.ofMillis(200)).ifPresent(st -> parts.add("QEMU " + id + " " + st
                    + (process.killedByUs() ? " (by Kiln)" : "")));
        }
        return parts.isEmpty() ? null : String.join("; ", parts);
    }

    /**
     * The panic line, when the guest kernel panicked: seen on the console, or reported by QEMU's
     * {@code GUEST_PANICKED} event (with a pvpanic device).
     */
    public Optional<String> guestPanic() {
        Optional<String> line = panicWatch.line();
        if (line.isPresent()) return line;
        if (qmp != null && qmp.peekEvents().stream().anyMatch(e -> e.name().equals("GUEST_PANICKED"))) {
            return Optional.of("GUEST_PANICKED event");
        }
        return Optional.empty();
    }

    /**
     * The guest kernel panicked: a clear state, a warning, and a {@code GUEST_PANICKED} event in the QMP queue
     * (QEMU sends its own only with a pvpanic device), with {@code "source": "console"} and the panic line.
     */
    private void onPanic() {
        // On the console's reader, holding its lock: no waiting here, and no lock of this machine's.
        String line = panicWatch.line().orElse(KERNEL_PANIC);
        synchronized (stateLock) {
            if (state == MachineState.RUNNING || state == MachineState.PAUSED) state = MachineState.PANICKED;
        }
        LOG.warn("the guest kernel of {} panicked: {}", id, line);
        Qmp q = qmp;
        if (q != null) {
            ObjectNode data = JsonNodeFactory.instance.objectNode().put("action", "console").put("source", "console").put("line", line);
            ObjectNode raw = JsonNodeFactory.instance.objectNode().put("event", "GUEST_PANICKED").set("data", data);
            q.post(raw);
        }
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
        try {
            return qmp().execute(command, QmpArgs.of(nameValues));
        } catch (RuntimeException e) {
            throw translate(e);
        }
    }

    /**
     * Plugs or unplugs a NIC's cable as the guest sees it ({@code set_link}: the guest loses carrier). Netdev
     * ids: {@value #USER_NETDEV} for the user-mode NIC, {@code sock0}, {@code sock1}… for socket NICs in the
     * order they were added.
     */
    public void setLink(String netdev, boolean up) {
        requireRunning();
        command("set_link", "name", netdev, "up", up);
    }

    /** Returns and clears the queued QMP events. */
    public List<Event> events() { return qmp().events(); }

    public Event awaitEvent(String name, JsonNode match, Duration timeout) {
        return call(() -> qmp().awaitEvent(name, match, timeout));
    }

    @Override
    public void pause() {
        requireRunning();
        call(() -> {
            qmp().execute("stop");
            return qmp().awaitEvent("STOP", null, Duration.ofSeconds(10));
        });
        state = MachineState.PAUSED;
    }

    @Override
    public void resume() {
        requireRunning();
        call(() -> {
            qmp().execute("cont");
            return qmp().awaitEvent("RESUME", null, Duration.ofSeconds(10));
        });
        state = MachineState.RUNNING;
    }

    /**
     * Resets the machine as the reset button would ({@code system_reset}) and waits for QEMU's {@code RESET}
     * event; the guest boots again. Kiln boots kernels with {@code -no-reboot} (a guest reboot ends QEMU), so
     * the reboot action is switched to "reset" around the request.
     */
    public void reset() {
        requireRunning();
        try {
            command("set-action", "reboot", "reset");
            command("system_reset");
            qmp().awaitEvent("RESET", null, Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            throw translate(e);
        } finally {
            if (config.image != null && qmp().state() == Qmp.State.RUNNING) command("set-action", "reboot", "shutdown");
        }
    }

    private void requireRunning() {
        if (cancelled != null) throw new MachineCancelledException("machine " + id + " was cancelled (" + cancelled + ")", null);
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
        markStopping();
        try {
            softShutdown(timeout, hasQuit);
        } catch (RuntimeException e) {
            hardShutdown();
            throw new AbnormalShutdownException(failure + ": " + e.getMessage(), e);
        } finally {
            cleanup();
        }
    }

    private void markStopping() {
        synchronized (stateLock) {
            if (state == MachineState.RUNNING || state == MachineState.PAUSED) state = MachineState.STOPPING;
        }
    }

    @Override
    public void kill() {
        if (!launched()) return;
        markStopping();
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
        awaitCleanup();
        if (exitStatus == null) throw new KilnException("QEMU " + id + " (pid " + process.pid() + ") did not exit, even after SIGKILL");
        return exitStatus.shellCode();
    }

    /** Waits for a cleanup another thread (the reaper, after QEMU exited by itself) is running. */
    private void awaitCleanup() {
        try {
            cleaned.get(90, TimeUnit.SECONDS);
        } catch (TimeoutException e) {
            throw new KilnException("cleanup of machine " + id + " did not finish within 90 s");
        } catch (ExecutionException | InterruptedException e) {
            if (e instanceof InterruptedException) Thread.currentThread().interrupt();
            throw new KilnException("waiting for the cleanup of machine " + id + " failed: " + e, e);
        }
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
            throw new WaitTimeoutException("QEMU " + id + " to exit" + (hasQuit ? " on its own" : " after quit"),
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
        if (state == MachineState.RUNNING || state == MachineState.PAUSED || state == MachineState.PANICKED) {
            Thread.ofVirtual().name("kiln-reap-" + id).start(this::cleanup);
        }
    }

    /** Runs once: closes connections, keeps the log, removes the work dir, reports a surprising death. */
    private void cleanup() {
        if (!cleanedUp.compareAndSet(false, true)) {
            awaitCleanup(); // another thread is at it: return when it is done, as if this one had done it
            return;
        }
        try {
            releaseEverything();
        } finally {
            cleaned.complete(null);
        }
    }

    private void releaseEverything() {
        closeListeners();
        channels.values().forEach(QemuMachine::closeQuietly);
        if (guest != null) guest.close();
        if (qmp != null) qmp.close();
        if (process != null) {
            if (process.isAlive()) process.kill();
            exitStatus = process.process().waitFor(Duration.ofSeconds(60)).orElse(null);
        }
        console.awaitEnd(Duration.ofSeconds(2)); // QEMU is gone: read what it wrote last (a panic, say) first
        console.close();
        finalLog = readLog();
        if (process != null) process.releaseLifeline();
        WorkDir.delete(workDir);
        if (exitStatus != null && !exitStatus.exited() && !(exitStatus.signal() == Posix.SIGKILL && process.killedByUs())) {
            LOG.warn("QEMU {} received signal {}; command: {}", id, exitStatus.signal(), String.join(" ", commandLine));
        }
        synchronized (stateLock) {
            if (state != MachineState.FAILED && state != MachineState.STARTING && state != MachineState.PANICKED) state = MachineState.EXITED;
        }
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
        QgaGuest g = agent();
        return new Guest() {
            @Override public Guest awaitReady(Duration timeout) {
                call(() -> g.awaitReady(timeout));
                return this;
            }
            @Override public ExecResult exec(ExecRequest request) { return call(() -> g.exec(request)); }
            @Override public void copyIn(Path hostFile, String guestPath) { call(() -> { g.copyIn(hostFile, guestPath); return null; }); }
            @Override public void copyOut(String guestPath, Path hostFile) { call(() -> { g.copyOut(guestPath, hostFile); return null; }); }
            @Override public void shutdown() { call(() -> { g.shutdown(); return null; }); }
            @Override public String toString() { return g.toString(); }
        };
    }

    /** Runs a guest call; a failure that a cancellation caused says so. */
    private <T> T call(java.util.function.Supplier<T> action) {
        try {
            return action.get();
        } catch (RuntimeException e) {
            throw translate(e);
        }
    }

    /** The agent client, with QGA's raw commands. */
    public QgaGuest agent() {
        if (guest == null) throw new KilnException("machine " + id + " has no guest agent channel (agent(false), or not started)");
        return guest;
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
        if (!launched()) {
            if (process != null) awaitCleanup(); // QEMU exited by itself and the reaper is still at it
            return;
        }
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

    /** A NIC on a socket handed to QEMU at spawn. */
    private record SocketNic(int childFd, String mac) {}

    /** A guest TCP port forwarded from 127.0.0.1:hostPort (0: chosen when QEMU binds it). */
    private record Forward(int guestPort, int hostPort) {
        String hostfwd() {
            return "tcp:127.0.0.1:" + hostPort + "-:" + guestPort;
        }
    }

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
        private final List<QemuOption> addFds = new ArrayList<>();
        private final List<Fd> extraFds = new ArrayList<>();
        private final List<SocketNic> socketNics = new ArrayList<>();
        private boolean userNetwork;
        private final List<Forward> forwards = new ArrayList<>();
        private final List<String> channels = new ArrayList<>();
        private boolean rng;
        private CompletionStage<?> cancelToken;
        private Duration timeLimit;
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
            QemuOption o = QemuOption.of(null).set("fd", inheritFd(fd)).set("set", fdset).setIfPresent("opaque", opaque);
            if (opts != null && !opts.isBlank()) for (String kv : opts.split(",")) {
                String[] p = kv.split("=", 2);
                if (p.length == 2) o.set(p[0], p[1]); else o.flag(p[0]);
            }
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
            socketNics.add(new SocketNic(inheritFd(fd), mac));
            return this;
        }

        /** A virtio NIC plugged into a port of a Kiln {@link Network}; its netdev id is {@code sock<n>}, n counting from 0. */
        public Builder nic(Port port) {
            return nic(port.fd(), port.mac());
        }

        /**
         * A user-mode (SLIRP) NIC, the guest's eth0: network {@value QemuMachine#USER_NET}, guest {@value QemuMachine#USER_GUEST_IP}
         * (given to the default image with {@code kiln.ip=}), gateway and host {@value QemuMachine#USER_GATEWAY}, MAC
         * {@value QemuMachine#USER_MAC}. On by {@link #forward}.
         */
        public Builder userNetwork(boolean on) {
            this.userNetwork = on;
            if (!on) forwards.clear();
            return this;
        }

        /**
         * Forwards a guest TCP port to a free host port on 127.0.0.1, chosen by the kernel when QEMU binds it
         * (so no other process can take it in between); read it with {@link QemuMachine#hostPort}.
         */
        public Builder forward(int guestPort) {
            return forward(guestPort, 0);
        }

        /** Forwards a guest TCP port to a given host port on 127.0.0.1 (0: a free one). */
        public Builder forward(int guestPort, int hostPort) {
            forwards.add(new Forward(checkPort(guestPort, "guest"), hostPort == 0 ? 0 : checkPort(hostPort, "host")));
            userNetwork = true;
            return this;
        }

        /** Forwards each port to the same port on the host (the seed's identity port map). */
        public Builder forwardIdentity(int... ports) {
            for (int p : ports) forward(p, p);
            return this;
        }

        /**
         * A byte-stream channel to the guest: a virtio-serial port named {@code name} (the guest finds it
         * through /sys/class/virtio-ports/*&#47;name); the host end is {@link QemuMachine#channel(String)}.
         */
        public Builder channel(String name) {
            if (name == null || name.isBlank() || channels.contains(name) || name.equals(AGENT_PORT_NAME)) {
                throw new IllegalArgumentException("channel name must be non-blank and unique: '" + name + "'");
            }
            channels.add(name);
            return this;
        }

        /** A virtio RNG (the guest's entropy need not wait for interrupts); on in {@link #microvmPreset}. */
        public Builder rng(boolean on) {
            this.rng = on;
            return this;
        }

        /**
         * The legacy-free microvm of Monogon's {@code RunMicroVM}: no PIC, PIT, RTC or ISA serial port, no
         * option ROMs; a virtio console (hvc0) as the console, a virtio RNG and a user-mode NIC
         * ({@link #userNetwork}; drop it with {@code userNetwork(false)}).
         */
        public Builder microvmPreset() {
            machineType = "microvm,x-option-roms=off,pic=off,pit=off,rtc=off,isa-serial=off";
            console("virtconsole", 0);
            rng = true;
            userNetwork = true;
            return this;
        }

        /**
         * Kills the machine when {@code token} completes (a test's or request's cancellation); guest calls, QMP
         * commands and awaited events under way or later then fail with {@link MachineCancelledException}, not an
         * ordinary failure (a console wait fails as the console closes; ask {@link QemuMachine#cancellation()}).
         */
        public Builder cancelOn(CompletionStage<?> token) {
            this.cancelToken = token;
            return this;
        }

        /** Kills the machine once it has run this long, as a cancellation ({@link MachineCancelledException}). */
        public Builder timeLimit(Duration limit) {
            if (limit.isNegative() || limit.isZero()) throw new IllegalArgumentException("time limit must be positive");
            this.timeLimit = limit;
            return this;
        }

        private static int checkPort(int port, String what) {
            if (port < 1 || port > 65535) throw new IllegalArgumentException(what + " port out of range: " + port);
            return port;
        }

        public Builder launchTimeout(Duration d) { this.launchTimeout = d; return this; }

        /** How long {@link QemuMachine#close()} waits for a graceful quit before killing. */
        public Builder shutdownTimeout(Duration d) { this.shutdownTimeout = d; return this; }

        public QemuMachine build() {
            if (!forwards.isEmpty() && !qmp) {
                throw new IllegalArgumentException("port forwards need QMP (Kiln reads the bound ports from QEMU): drop qmp(false)");
            }
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
