package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.KilnException;
import dev.kiln.LaunchException;
import dev.kiln.MachineSpec;
import dev.kiln.Nic;
import dev.kiln.Text;
import dev.kiln.agent.QgaGuest;
import dev.kiln.image.DefaultImage;
import dev.kiln.Event;
import dev.kiln.ExitStatus;
import dev.kiln.os.Fd;
import dev.kiln.os.Posix;
import dev.kiln.support.Deadline;
import dev.kiln.support.Executables;
import dev.kiln.support.HostCommand;
import dev.kiln.support.HostCpu;
import dev.kiln.support.VersionCache;
import dev.kiln.support.VmmProcess;
import dev.kiln.vmm.spi.Launch;
import dev.kiln.vmm.spi.VmmDriver;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.FileChannel;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * How QEMU plugs into Kiln's machine core. Kiln listens on the QMP, console and channel sockets and QEMU connects to
 * them while it starts, so no console output is lost and a QEMU that dies early is noticed at once. The guest
 * agent's socket is QEMU's (a server), because Kiln reconnects to it at will.
 */
final class QemuDriver implements VmmDriver {
    private static final Logger LOG = LoggerFactory.getLogger(QemuDriver.class);
    /** The id of the agent's virtio-serial port device, named in QEMU's VSERPORT_CHANGE events. */
    static final String AGENT_PORT_ID = "qga0";

    private final MachineSpec spec;
    private final QemuOptions options;
    private volatile Accelerator.Choice accel;
    private volatile String id;
    private volatile QemuArguments arguments;
    private volatile List<String> commandLine = List.of();
    private volatile VmmProcess process;
    private volatile Launch launch;
    private volatile Qmp qmp;
    private volatile QgaGuest guest;
    private volatile FdPassing fdPassing;
    private volatile UserNetworking userNetworking;
    private final Map<String, SocketChannel> channels = new ConcurrentHashMap<>();
    private final List<ServerSocketChannel> listeners = new ArrayList<>();
    private ServerSocketChannel qmpListener, consoleListener;
    private final List<ServerSocketChannel> channelListeners = new ArrayList<>();
    private Path agentPath;
    private QemuExecPorts execPorts;
    private final List<VmmProcess> shareDaemons = new ArrayList<>();

    QemuDriver(MachineSpec spec, QemuOptions options) {
        this.spec = spec;
        this.options = options;
    }

    Accelerator.Choice accelerator() {
        return accel;
    }

    boolean paused() {
        return options.paused;
    }

    @Override
    public void preflight() {
        if (Executables.find(options.binary).isEmpty()) {
            String where = options.binary.contains("/") ? "is missing or not executable" : "was not found on PATH (" + Executables.path() + ")";
            throw new LaunchException("QEMU binary '" + options.binary + "' " + where + "; install qemu-system-x86 or set KILN_QEMU",
                    List.of(options.binary), null, null, null);
        }
        if (spec.userNetwork().map(u -> !u.forwards().isEmpty()).orElse(false) && !options.qmp) {
            throw new IllegalArgumentException("forwards: port forwards need QMP (Kiln reads the bound ports from QEMU); drop qmp(false)");
        }
        if (spec.vsockCid().isPresent() && !Files.exists(Path.of("/dev/vhost-vsock"))) {
            throw new KilnException("vsock: QEMU's vhost-vsock device needs /dev/vhost-vsock, which this host lacks (load the"
                    + " vhost_vsock kernel module)");
        }
        for (Nic n : spec.nics()) {
            if (n instanceof Nic.Tap tap && !Files.exists(Path.of("/sys/class/net", tap.device()))) {
                throw new KilnException("nics: there is no network device '" + tap.device() + "' on this host: make the tap first"
                        + " (ip tuntap add " + tap.device() + " mode tap)");
            }
        }
        if (spec.firmware() == dev.kiln.Firmware.UEFI) Ovmf.find();
        if (spec.shares().stream().anyMatch(sh -> sh.transport() != dev.kiln.Share.Transport.NINE_P)) Virtiofsd.find();
        accel = options.accelerator.resolve();
    }

    @Override
    public boolean sharedFolders() {
        return true;
    }

    /** What the firmware prints when the disk does not boot: SeaBIOS's last line, and OVMF falling back to its shell. */
    @Override
    public List<String> bootFailures(GuestImage image) {
        // SeaBIOS's last word; OVMF's on the disk (first in the boot order), before it spends minutes on network boot.
        return image != null && image.firmwareBoot()
                ? List.of("No bootable device.", "BdsDxe: failed to load Boot", "UEFI Interactive Shell") : List.of();
    }

    @Override
    public GuestImage defaultImage() {
        return DefaultImage.get(line -> LOG.info("default image: {}", line));
    }

    @Override
    public VmmProcess spawn(Launch launch) throws IOException {
        this.launch = launch;
        this.id = launch.id();
        userNetworking = new UserNetworking(id, this::qmp);
        Path workDir = launch.workDir();
        Path sockDir = options.sockDir != null ? options.sockDir : workDir;
        arguments = new QemuArguments(spec, options, launch.image(), launch.drives(), accel.accelerator(), launch.restoreState() != null,
                launch.memory());
        Path qmpPath = null, consolePath = null, fdMonitor = null;
        if (options.qmp) {
            SocketAddress a = options.monitorTcp != null ? options.monitorTcp
                    : UnixDomainSocketAddress.of(qmpPath = sockDir.resolve(id + "-monitor.sock"));
            qmpListener = listen(a);
        }
        if (arguments.consoleOn()) consoleListener = listen(UnixDomainSocketAddress.of(consolePath = sockDir.resolve(id + "-console.sock")));
        if (arguments.agentOn()) agentPath = sockDir.resolve(id + "-qga.sock");
        List<Path> channelPaths = new ArrayList<>();
        for (int i = 0; i < options.channels.size(); i++) {
            Path p = sockDir.resolve(id + "-chan" + i + ".sock");
            channelPaths.add(p);
            channelListeners.add(listen(UnixDomainSocketAddress.of(p)));
        }
        List<Path> execPaths = new ArrayList<>();
        for (int i = 0; i < 4 * arguments.execSlots(); i++) execPaths.add(sockDir.resolve(id + "-x" + i + ".sock"));
        if (!execPaths.isEmpty()) execPorts = new QemuExecPorts(arguments.execSlots(), execPaths, this::qmp);
        if (options.fdPassing && options.qmp) fdMonitor = sockDir.resolve(id + "-fdmon.sock");
        fdPassing = new FdPassing(fdMonitor);
        List<Path> shareSockets = startShareDaemons(sockDir);
        Path uefiCode = null, uefiVars = null;
        if (arguments.firmwareBoot() && spec.firmware() == dev.kiln.Firmware.UEFI) {
            Ovmf ovmf = Ovmf.find();
            uefiCode = ovmf.code();
            uefiVars = workDir.resolve("uefi-vars.fd"); // the machine's own: the firmware writes its boot entries there
            Files.copy(ovmf.vars(), uefiVars);
        }

        List<Fd> inherited = new ArrayList<>();
        List<Fd> opened = new ArrayList<>();
        try {
            List<Integer> nicFds = new ArrayList<>();
            for (QemuOptions.SocketNic n : options.socketNics) {
                nicFds.add(VmmProcess.childFdOf(inherited.size()));
                inherited.add(n.fd());
            }
            List<Integer> fileFds = new ArrayList<>();
            for (QemuOptions.AddedFile f : options.addedFiles) {
                Fd fd = Posix.open(f.file(), f.writable());
                opened.add(fd);
                fileFds.add(VmmProcess.childFdOf(inherited.size()));
                inherited.add(fd);
            }
            commandLine = arguments.build(new QemuArguments.Sockets(qmpPath, consolePath, agentPath, channelPaths, fdMonitor,
                    nicFds, fileFds, execPaths, shareSockets, uefiCode, uefiVars));
            LOG.debug("{}: accelerator {}; launching {}", id, accel, String.join(" ", commandLine));
            process = launch.spawn(commandLine, null, inherited, "");
            return process;
        } finally {
            opened.forEach(Fd::close); // QEMU has its own copies
        }
    }

    /**
     * Starts a virtiofsd under the lifeline for each virtio-fs share, on a socket Kiln made and listens on already (the
     * daemon gets its fd), so QEMU can connect the moment it starts; null in the list for a 9p share. The daemons end
     * when QEMU lets go of them, and at the latest with the machine.
     */
    private List<Path> startShareDaemons(Path sockDir) {
        List<Path> sockets = new ArrayList<>();
        if (launch.memory() != null && arguments.anyVirtiofs()) {
            throw new KilnException("shares: a machine whose memory is a file (a template or its clone) cannot have virtio-fs shares;"
                    + " use Share.Transport.NINE_P or boot it");
        }
        for (int i = 0; i < spec.shares().size(); i++) {
            if (!arguments.virtiofs(i)) {
                sockets.add(null);
                continue;
            }
            Path socket = sockDir.resolve(id + "-fs" + i + ".sock");
            Fd listening = dev.kiln.os.UnixSocket.listen(socket);
            try {
                List<String> cmd = Virtiofsd.command(Virtiofsd.find(), spec.shares().get(i), VmmProcess.childFdOf(0));
                LOG.debug("{}: share {}: {}", id, i, String.join(" ", cmd));
                synchronized (shareDaemons) {
                    shareDaemons.add(launch.spawn(cmd, null, List.of(listening), ""));
                }
            } finally {
                listening.close(); // the daemon has its own copy
            }
            sockets.add(socket);
        }
        return sockets;
    }

    private ServerSocketChannel listen(SocketAddress address) throws IOException {
        ServerSocketChannel s = address instanceof UnixDomainSocketAddress
                ? ServerSocketChannel.open(StandardProtocolFamily.UNIX) : ServerSocketChannel.open();
        synchronized (listeners) {
            listeners.add(s);
        }
        s.bind(address);
        return s;
    }

    @Override
    public void bringUp(Deadline deadline) {
        CompletableFuture<ExitStatus> exit = process.onExit();
        if (qmpListener != null) {
            qmp = Qmp.connect(id, accept(qmpListener, exit, deadline, "the QMP connection"), deadline.remaining());
        }
        if (consoleListener != null) {
            launch.console().attach(accept(consoleListener, exit, deadline, "the console connection"));
            spec.consoleLog().ifPresent(launch.console()::teeTo);
        }
        for (int i = 0; i < channelListeners.size(); i++) {
            channels.put(options.channels.get(i), accept(channelListeners.get(i), exit, deadline, "channel " + options.channels.get(i)));
        }
        closeListeners();
        if (launch.restoreState() != null) {
            // The saved guest's exec shells read their control ports: connected before the state loads, they read on.
            if (execPorts != null) {
                try {
                    execPorts.connectAll(deadline);
                } catch (IOException e) {
                    throw new KilnException("cannot connect the exec ports of " + id + ": " + e.getMessage(), e);
                }
            }
            loadState(launch.restoreState());
            // Saved paused, the guest comes back paused: it runs on unless the machine is to start paused.
            if (!options.paused) qmp.execute("cont");
        }
        if (spec.userNetwork().isPresent() && qmp != null) userNetworking.readForwards();
        if (agentPath != null) {
            QgaGuest g = new QgaGuest(this::connectAgent, () -> launch.console().tail(2000), launch.vmmState(), id);
            // QEMU drops what is written to a port the guest has not opened: sync the moment the agent opens it.
            if (qmp != null) qmp.onEvent("VSERPORT_CHANGE", e -> {
                if (AGENT_PORT_ID.equals(e.text("id")) && Boolean.TRUE.equals(e.data().get("open"))) g.nudge();
            });
            if (execPorts != null) {
                QemuExecPorts ports = execPorts;
                qmp.onEvent("VSERPORT_CHANGE", ports::portChanged);
                g.execPorts(ports);
            }
            guest = g;
        }
    }

    /** Accepts QEMU's connection, failing at once if QEMU exits and at the deadline otherwise. */
    private SocketChannel accept(ServerSocketChannel listener, CompletableFuture<ExitStatus> exit, Deadline deadline, String what) {
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
                accepted.thenAccept(QemuDriver::closeQuietly); // in case QEMU connected just before it died
                throw new KilnException("QEMU exited (" + st + ") before opening " + what);
            }
            return (SocketChannel) first;
        } catch (TimeoutException e) {
            t.interrupt();
            accepted.thenAccept(QemuDriver::closeQuietly);
            throw new KilnException("QEMU did not open " + what + " within " + Text.human(deadline.total()));
        } catch (ExecutionException e) {
            throw new KilnException("waiting for " + what + " failed: " + e.getCause().getMessage(), e.getCause());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while waiting for " + what, e);
        }
    }

    private SocketChannel connectAgent() {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(agentPath));
        } catch (IOException e) {
            throw new UncheckedIOException("cannot connect to the guest agent socket " + agentPath, e);
        }
    }

    private void closeListeners() {
        synchronized (listeners) {
            for (ServerSocketChannel s : listeners) {
                try {
                    SocketAddress bound = s.getLocalAddress();
                    s.close();
                    if (bound instanceof UnixDomainSocketAddress u) Files.deleteIfExists(u.getPath());
                } catch (IOException ignored) {
                    // closing; best effort, the work dir goes anyway
                }
            }
            listeners.clear();
        }
    }

    static void closeQuietly(SocketChannel ch) {
        try {
            ch.close();
        } catch (IOException ignored) {
            // nothing to do
        }
    }

    @Override
    public List<String> commandLine() {
        return commandLine;
    }

    @Override
    public Guest guest() {
        return guest;
    }

    QgaGuest agent() {
        return guest;
    }

    Qmp qmp() {
        Qmp q = qmp;
        if (q == null) throw new KilnException("machine " + id + " has no QMP connection (QMP is off, or the machine is not up)");
        return q;
    }

    boolean hasQmp() {
        return qmp != null;
    }

    UserNetworking userNetworking() {
        UserNetworking u = userNetworking;
        if (u == null) throw new KilnException("machine " + id + " is not started: it has no network yet");
        return u;
    }

    FdPassing fdPassing() {
        return fdPassing;
    }

    SocketChannel channel(String name) {
        SocketChannel ch = channels.get(name);
        if (ch == null) throw new KilnException("machine " + id + " has no channel '" + name + "' (channels: " + channels.keySet() + ")");
        return ch;
    }

    @Override
    public String requestStop(Duration timeout) {
        Qmp q = qmp;
        if (q == null) {
            return process.signal(Posix.SIGTERM) ? "SIGTERM" : "nothing (QEMU had exited)"; // QEMU quits cleanly on SIGTERM
        }
        if (q.state() != Qmp.State.RUNNING) {
            // QEMU closes QMP as it exits (a guest that just powered off): give the exit a moment to be seen.
            if (process.awaitExit(Duration.ofMillis(500)).isPresent()) return "nothing (QEMU had exited)";
            throw new KilnException("QMP is closed (" + q.closeReason() + ") and QEMU still runs");
        }
        try {
            q.execute("quit", null, timeout);
        } catch (RuntimeException e) {
            // QEMU may close the socket before the reply arrives: that is a quit too.
            if (process.isAlive() && q.state() == Qmp.State.RUNNING) throw e;
        }
        return "quit";
    }

    @Override
    public boolean snapshots() {
        return true;
    }

    /** Whether this launch left the kernel off the command line ({@link QemuArguments#kernelLeftOff()}). */
    boolean kernelLeftOff() {
        return arguments != null && arguments.kernelLeftOff();
    }

    @Override
    public boolean memoryFiles() {
        return true;
    }

    @Override
    public List<String> nicMacs() {
        return arguments.nicMacs();
    }

    @Override
    public Map<String, String> stateInfo() {
        Map<String, String> info = new TreeMap<>();
        info.put("vmm.version", VersionCache.of(options.binary, QemuDriver::version));
        info.put("vmm.machine", options.machineType != null ? options.machineType : "kiln-default");
        info.put("vmm.accel", accel.accelerator().qemuName());
        // What the QEMU options add to the machine: its saved state has a section for each device.
        info.put("vmm.devices", "console " + (options.consoleDevice != null ? options.consoleDevice : "serial") + "@" + options.consoleIndex
                + ", rng " + options.rng + ", channels " + options.channels + ", socket nics " + options.socketNics.size()
                + ", exec slots " + (options.execSlots < 0 ? "auto" : options.execSlots) + ", args " + options.args);
        // With KVM the guest sees the host's CPU (-cpu host): a restore on another CPU model may not run.
        if (accel.accelerator() == Accelerator.KVM) info.put("vmm.cpu", HostCpu.model());
        return info;
    }

    /**
     * The paused guest's memory and devices into {@code file}: QEMU migrates to a socket Kiln listens on, and Kiln
     * writes what arrives. Done when QEMU says so and Kiln has the last byte on disk (fsync), not before.
     */
    @Override
    public void saveState(Path file, Duration timeout) {
        Deadline deadline = Deadline.after(timeout);
        Path socket = launch.workDir().resolve("migration.sock");
        try (ServerSocketChannel server = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            server.bind(UnixDomainSocketAddress.of(socket));
            CompletableFuture<Void> written = new CompletableFuture<>();
            Thread.ofVirtual().name("kiln-save-" + id).start(() -> {
                try (SocketChannel in = server.accept(); FileChannel out = FileChannel.open(file, StandardOpenOption.CREATE_NEW,
                        StandardOpenOption.WRITE)) {
                    for (long at = 0, n; (n = out.transferFrom(in, at, 1 << 24)) > 0; ) at += n;
                    out.force(true);
                    written.complete(null);
                } catch (IOException | RuntimeException e) {
                    written.completeExceptionally(e);
                }
            });
            try {
                migrate("migrate", "unix:" + socket, deadline.remaining(), () -> {});
                written.get(deadline.remaining().toMillis(), TimeUnit.MILLISECONDS);
            } catch (ExecutionException | TimeoutException e) {
                throw new KilnException("cannot write the saved state to " + file + ": " + (e instanceof ExecutionException x ? x.getCause() : e), e);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new KilnException("interrupted while saving the state to " + file, e);
            }
        } catch (IOException e) {
            throw new KilnException("cannot listen on " + socket + " for the saved state: " + e.getMessage(), e);
        } finally {
            deleteQuietly(socket);
        }
    }

    /** The saved state from {@code file} into this QEMU, started with {@code -incoming defer}, through a socket QEMU listens on. */
    private void loadState(Path file) {
        Path socket = launch.workDir().resolve("incoming.sock");
        try {
            migrate("migrate-incoming", "unix:" + socket, RESTORE_LIMIT, () -> Thread.ofVirtual().name("kiln-load-" + id).start(() -> {
                try (SocketChannel out = SocketChannel.open(UnixDomainSocketAddress.of(socket));
                     FileChannel in = FileChannel.open(file, StandardOpenOption.READ)) {
                    for (long at = 0, size = in.size(); at < size; ) at += in.transferTo(at, size - at, out);
                } catch (IOException e) {
                    LOG.debug("{}: the saved state stopped flowing into QEMU: {}", id, e.getMessage()); // QEMU says why
                }
            }));
        } finally {
            deleteQuietly(socket);
        }
    }

    private static void deleteQuietly(Path p) {
        try {
            Files.deleteIfExists(p);
        } catch (IOException ignored) {
            // in the work dir: gone with it
        }
    }

    /**
     * Runs an outgoing ({@code migrate}) or incoming ({@code migrate-incoming}) migration, then {@code started}, and waits
     * for it to complete, failing with QEMU's own reason. Without a bandwidth limit: QEMU's default of 128 MiB/s would make a save slow.
     */
    private void migrate(String command, String uri, Duration timeout, Runnable started) {
        Qmp q = qmp();
        ObjectNode events = JsonNodeFactory.instance.objectNode();
        var capabilities = events.putArray("capabilities");
        capabilities.addObject().put("capability", "events").put("state", true);
        // RAM in a file is left out of the stream: the template's file is the memory, on both sides.
        if (launch.memory() != null) capabilities.addObject().put("capability", "x-ignore-shared").put("state", true);
        q.execute("migrate-set-capabilities", events);
        if (command.equals("migrate")) q.execute("migrate-set-parameters", QmpArgs.of("max-bandwidth", Long.MAX_VALUE / 2));
        q.execute(command, QmpArgs.of("uri", uri));
        started.run();
        Event end;
        try {
            end = q.awaitAnyEvent(List.of(migrationStatus("completed"), migrationStatus("failed")), timeout);
        } catch (RuntimeException e) {
            if (command.equals("migrate")) cancelMigration(q);
            throw new KilnException(command + " did not complete: " + e.getMessage(), e);
        }
        if (!"completed".equals(end.text("status"))) {
            String why;
            try {
                why = q.execute("query-migrate").path("error-desc").asText("QEMU gives no reason");
            } catch (RuntimeException e) {
                why = "QEMU gave up and exited (its output says why)"; // an incoming migration that fails ends QEMU
            }
            throw new KilnException(command + " failed: " + why);
        }
    }

    /**
     * Calls off an outgoing migration that overran, and waits (briefly) for its end, so that it neither stops the
     * guest later nor leaves its end to be taken for the next one's.
     */
    private static void cancelMigration(Qmp q) {
        try {
            q.execute("migrate_cancel");
            q.awaitAnyEvent(List.of(migrationStatus("cancelled"), migrationStatus("completed"), migrationStatus("failed")),
                    Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            LOG.warn("could not call off the migration: {}", e.getMessage());
        }
    }

    private static Qmp.EventFilter migrationStatus(String status) {
        ObjectNode match = JsonNodeFactory.instance.objectNode();
        match.putObject("data").put("status", status);
        return new Qmp.EventFilter("MIGRATION", match);
    }

    /** Loading a saved guest is bounded by the disk, like saving it: minutes for many GiB. */
    private static final Duration RESTORE_LIMIT = Duration.ofMinutes(10);

    private static String version(String binary) {
        HostCommand.Result r = HostCommand.run(List.of(binary, "--version"), null, Duration.ofSeconds(30), binary + " --version");
        if (!r.ok()) throw new KilnException(binary + " --version failed: " + r.complaint());
        return r.stdout().lines().findFirst().orElse("?").strip();
    }

    @Override
    public void pause() {
        qmp().execute("stop"); // synchronous: the CPUs have stopped when QEMU answers
    }

    @Override
    public void resume() {
        qmp().execute("cont");
    }

    @Override
    public void disconnect(String reason) {
        closeListeners();
        channels.values().forEach(QemuDriver::closeQuietly);
        QgaGuest g = guest;
        if (g != null) g.close(reason);
        if (execPorts != null) execPorts.close(); // the connections no slot took
        Qmp q = qmp;
        if (q != null) q.close(reason);
        // The share daemons now: they write to the VMM's output, whose end is awaited next, and one QEMU never
        // connected to would wait for ever. Their lifelines are released with the leftovers, once they have exited.
        synchronized (shareDaemons) {
            shareDaemons.stream().filter(VmmProcess::isAlive).forEach(VmmProcess::kill);
        }
    }

    @Override
    public void removeLeftovers() {
        // Everything QEMU needs lives in the work dir (or sockDir, whose sockets are removed once connected).
        synchronized (shareDaemons) {
            for (VmmProcess d : shareDaemons) {
                if (d.isAlive()) d.kill();
                d.awaitExit(Duration.ofSeconds(30));
                d.releaseLifeline();
            }
            shareDaemons.clear();
        }
        if (launch != null) {
            for (int i = 0; i < spec.shares().size(); i++) {
                Path sockDir = options.sockDir != null ? options.sockDir : launch.workDir();
                try {
                    Files.deleteIfExists(sockDir.resolve(id + "-fs" + i + ".sock"));
                } catch (IOException ignored) {
                    // in the work dir unless sockDir is set: best effort
                }
            }
        }
    }

    /**
     * A GUEST_PANICKED event in the QMP queue (QEMU sends its own only with a pvpanic device), with
     * {@code "source": "console"} and the panic line.
     */
    @Override
    public void onGuestPanic(String line) {
        Qmp q = qmp;
        if (q == null) return;
        ObjectNode data = JsonNodeFactory.instance.objectNode().put("action", "console").put("source", "console").put("line", line);
        ObjectNode raw = JsonNodeFactory.instance.objectNode().put("event", "GUEST_PANICKED").set("data", data);
        q.post(raw);
    }

    @Override
    public InetSocketAddress hostAddress(int guestPort) {
        return new InetSocketAddress("127.0.0.1", userNetworking().hostPort(guestPort));
    }
}
