package dev.kiln.qemu;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.Backend;
import dev.kiln.Console;
import dev.kiln.ExecRequest;
import dev.kiln.GuestImage;
import dev.kiln.Event;
import dev.kiln.KilnException;
import dev.kiln.MachineSpec;
import dev.kiln.SpecBuilder;
import dev.kiln.agent.QgaGuest;
import dev.kiln.qemu.internal.NetworkEnds;
import dev.kiln.qemu.net.Cable;
import dev.kiln.qemu.net.Port;
import dev.kiln.support.Deadline;
import dev.kiln.vmm.VmmMachine;

import java.net.InetSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Objects;

/**
 * A QEMU virtual machine: the Java counterpart of QEMU's {@code QEMUMachine}. Configure with {@link #builder()} (or
 * start any {@link MachineSpec} with {@link #create(MachineSpec)}), then {@link #start()}; {@link #close()} always
 * leaves nothing behind. Its life is Kiln's common one ({@link VmmMachine}); what is QEMU's own — QMP, user-mode
 * networking with its forwards, channels, fd passing, reset, links — is here.
 */
public final class QemuMachine extends VmmMachine {
    /** Exec slots by default: one per 128 MiB of guest memory, 1 to 4 (a slot's ports cost the guest 2 MiB of buffers). */
    static final int AUTO_EXEC_SLOTS = -1;
    /** virtio-serial has 31 ports; the console, the agent and a few channels take some. */
    static final int MAX_EXEC_SLOTS = 6;

    /** The name of the virtio-serial port the guest agent listens on. */
    public static final String AGENT_PORT_NAME = "org.qemu.guest_agent.0";
    /** The user-mode network: its netdev id, range, the guest's address, the gateway and the guest's MAC. */
    public static final String USER_NETDEV = QemuArguments.USER_NETDEV, USER_NET = QemuArguments.USER_NET,
            USER_GUEST_IP = QemuArguments.USER_GUEST_IP, USER_GATEWAY = QemuArguments.USER_GATEWAY,
            USER_MAC = QemuArguments.USER_MAC;

    private final QemuDriver qemu;

    private QemuMachine(MachineSpec spec, QemuDriver driver) {
        super(spec, driver);
        this.qemu = driver;
    }

    /** A machine for {@code spec}, not started; the spec must be for QEMU. */
    public static QemuMachine create(MachineSpec spec) {
        if (spec.backend() != Backend.QEMU) {
            throw new IllegalArgumentException("backend: the spec is for " + spec.backend().displayName() + ", not QEMU");
        }
        return new QemuMachine(spec, new QemuDriver(spec, spec.options(QemuOptions.class).orElse(QemuOptions.DEFAULTS)));
    }

    public static Builder builder() {
        return new Builder();
    }

    @Override
    public QemuMachine start() {
        super.start();
        return this;
    }

    @Override
    protected boolean startsPaused() {
        return qemu.paused();
    }

    /** The accelerator this machine runs on, and why it was chosen (known once started). */
    public Accelerator.Choice accelerator() {
        return qemu.accelerator();
    }

    // ---- QMP ---------------------------------------------------------------------------------------------

    /** The QMP connection; fails when QMP is off or the machine is not up. */
    public Qmp qmp() {
        return qemu.qmp();
    }

    /** Runs a QMP command and returns its result. Arguments are name/value pairs. */
    public JsonNode command(String command, Object... nameValues) {
        return call(() -> qemu.qmp().execute(command, QmpArgs.of(nameValues)));
    }

    /** Returns and clears the queued QMP events. */
    public List<Event> events() {
        return qemu.qmp().events();
    }

    /** Waits for a QMP event named {@code name} whose data contains {@code match} (null: any). */
    public Event awaitEvent(String name, JsonNode match, Duration timeout) {
        return call(() -> qemu.qmp().awaitEvent(name, match, timeout));
    }

    /**
     * Resets the machine as the reset button would ({@code system_reset}) and waits for QEMU's {@code RESET} event;
     * the guest boots again. Kiln boots kernels with {@code -no-reboot} (a guest reboot ends QEMU), so the reboot
     * action is switched to "reset" around the request.
     */
    public void reset() {
        requireLive("reset()");
        requireKernel("reset()");
        boolean boots = image().isPresent();
        RuntimeException failure = null;
        try {
            if (boots) command("set-action", "reboot", "reset");
            command("system_reset");
            awaitEvent("RESET", null, Duration.ofSeconds(10));
        } catch (RuntimeException e) {
            failure = e;
        }
        if (boots) {
            try {
                command("set-action", "reboot", "shutdown");
            } catch (RuntimeException e) {
                if (failure == null) failure = e;
                else failure.addSuppressed(e);
            }
        }
        if (failure != null) throw failure;
    }

    private void requireKernel(String what) {
        if (qemu.kernelLeftOff()) {
            throw new KilnException(what + ": machine " + id() + " is a clone of a template, started without its kernel (it is in"
                    + " the template's memory): it cannot boot again; start a machine from the spec to reboot one");
        }
    }

    /**
     * Reboots the guest from inside, as {@code systemctl reboot} does (services stop, file systems are written out and
     * unmounted), then waits until the image is ready again: its ready marker on the console, its agent. Needs a guest
     * with systemd and its agent, such as a Debian image; the spec's own readiness probes are not run again.
     * Like {@link #reset()}, the reboot action is "reset" only while this runs.
     */
    public void reboot(Duration timeout) {
        requireLive("reboot()");
        requireKernel("reboot()");
        GuestImage image = image().orElseThrow(() -> new KilnException("reboot(): machine " + id() + " boots no guest"));
        Deadline deadline = Deadline.after(timeout);
        Console.Cursor cursor = console().cursor();
        command("set-action", "reboot", "reset");
        try {
            events(); // a RESET from before this call must not count
            guest().exec(ExecRequest.of("systemctl", "reboot", "--no-block").timeout(deadline.remaining()).build()).orThrow();
            awaitEvent("RESET", null, deadline.remaining());
        } finally {
            if (state().isLive()) command("set-action", "reboot", "shutdown");
        }
        if (image.readyMarker() != null) cursor.await(image.readyMarker(), deadline.remaining());
        if (image.agent()) guest().awaitReady(deadline.remaining());
    }

    /**
     * Plugs or unplugs a NIC's cable as the guest sees it ({@code set_link}: the guest loses carrier). Netdev ids:
     * {@value #USER_NETDEV} for the user-mode NIC, {@code sock0}, {@code sock1}… for socket NICs, {@code tap0}… for taps.
     */
    public void setLink(String netdev, boolean up) {
        requireLive("setLink()");
        command("set_link", "name", netdev, "up", up);
    }

    // ---- user-mode networking ---------------------------------------------------------------------------

    /** The host port (on 127.0.0.1) that forwards to {@code guestPort}. */
    public int hostPort(int guestPort) {
        return qemu.userNetworking().hostPort(guestPort);
    }

    /** All forwards, guest port → host port. */
    public Map<Integer, Integer> hostPorts() {
        return qemu.userNetworking().hostPorts();
    }

    /**
     * Forwards another guest TCP port while the machine runs ({@code hostfwd_add}); 0 as {@code hostPort} lets the
     * kernel pick a free one. Returns the host port.
     */
    public int addForward(int guestPort, int hostPort) {
        requireLive("addForward()");
        if (spec().userNetwork().isEmpty()) {
            throw new KilnException("machine " + id() + " has no user-mode network: give its spec userNetwork() or forward(...)");
        }
        return call(() -> qemu.userNetworking().addForward(guestPort, hostPort));
    }

    // ---- channels and fd passing ------------------------------------------------------------------------

    /** The host end of a channel declared with {@link Builder#channel(String)}: bytes to and from the guest's port. */
    public SocketChannel channel(String name) {
        return qemu.channel(name);
    }

    /**
     * Opens {@code file} and passes it to QEMU over SCM_RIGHTS as {@code fdName} ({@code getfd}), on a QMP monitor kept
     * for fd passing; then runs {@code thenCommand} (may be null) on that same monitor, since QEMU looks fd names up per
     * monitor. Needs {@link Builder#fdPassing(boolean)}.
     */
    public JsonNode passFile(Path file, boolean writable, String fdName, String thenCommand, ObjectNode thenArguments) {
        requireLive("passFile()");
        return call(() -> qemu.fdPassing().passFile(file, writable, fdName, thenCommand, thenArguments));
    }

    /** Opens {@code file} and adds it to fd set {@code fdsetId} ({@code add-fd}); returns QEMU's answer. */
    public JsonNode addFileToSet(Path file, boolean writable, int fdsetId, String opaque) {
        requireLive("addFileToSet()");
        return call(() -> qemu.fdPassing().addFileToSet(file, writable, fdsetId, opaque));
    }

    /** The agent client, with QGA's raw commands. */
    public QgaGuest agent() {
        QgaGuest g = qemu.agent();
        if (g == null) throw new KilnException("machine " + id() + " has no guest agent channel (agent(false), no guest, or not started)");
        return g;
    }

    /** Settings for a {@link QemuMachine}: the common ones of every backend, and QEMU's own. */
    public static final class Builder extends SpecBuilder<Builder> {
        private String binary = System.getenv().getOrDefault("KILN_QEMU", "qemu-system-x86_64");
        private final List<String> args = new ArrayList<>();
        private final List<String> wrapper = new ArrayList<>();
        private String machineType;
        private Accelerator accelerator = Accelerator.fromEnvironment();
        private String consoleDevice;
        private int consoleIndex;
        private Boolean console;
        private Boolean agent;
        private boolean qmp = true;
        private InetSocketAddress monitorTcp;
        private boolean monitorNull;
        private Path sockDir;
        private boolean paused;
        private boolean noDefaults = true;
        private boolean fdPassing;
        private boolean rng;
        private final List<String> channels = new ArrayList<>();
        private final List<QemuOptions.SocketNic> socketNics = new ArrayList<>();
        private final List<QemuOptions.AddedFile> addedFiles = new ArrayList<>();
        private int execSlots = AUTO_EXEC_SLOTS;

        Builder() {
            backend(Backend.QEMU);
        }

        /** Takes the spec's settings, and its QEMU options when it has some. */
        @Override
        public Builder from(MachineSpec spec) {
            super.from(spec);
            backend(Backend.QEMU);
            spec.options(QemuOptions.class).ifPresent(o -> {
                binary = o.binary;
                args.clear();
                args.addAll(o.args);
                wrapper.clear();
                wrapper.addAll(o.wrapper);
                machineType = o.machineType;
                accelerator = o.accelerator;
                consoleDevice = o.consoleDevice;
                consoleIndex = o.consoleIndex;
                console = o.console;
                agent = o.agent;
                qmp = o.qmp;
                monitorTcp = o.monitorTcp;
                monitorNull = o.monitorNull;
                sockDir = o.sockDir;
                paused = o.paused;
                noDefaults = o.noDefaults;
                fdPassing = o.fdPassing;
                rng = o.rng;
                channels.clear();
                channels.addAll(o.channels);
                socketNics.clear();
                socketNics.addAll(o.socketNics);
                addedFiles.clear();
                addedFiles.addAll(o.addedFiles);
                execSlots = o.execSlots;
            });
            return this;
        }

        /** The QEMU binary: a path, or a name looked up on PATH (default {@code $KILN_QEMU}, else qemu-system-x86_64). */
        public Builder binary(String path) { this.binary = Objects.requireNonNull(path, "binary"); return this; }

        /** Extra QEMU arguments, appended after Kiln's. */
        public Builder args(String... more) { args.addAll(List.of(more)); return this; }

        /** A command QEMU runs under, e.g. {@code strace -f -o /tmp/trace}. */
        public Builder wrapper(String... prefix) { wrapper.addAll(List.of(prefix)); return this; }

        /** Where sockets go (unix socket paths are limited to 107 bytes); default: the work dir. */
        public Builder sockDir(Path dir) { this.sockDir = dir; return this; }

        /** QMP on a TCP address Kiln listens on, instead of a unix socket. */
        public Builder monitorTcp(InetSocketAddress address) { this.monitorTcp = address; return this; }

        /** Switches QMP off (no monitor socket); QEMU is then stopped with SIGTERM. */
        public Builder qmp(boolean on) { this.qmp = on; return this; }

        /** Adds an unused {@code -monitor null}. */
        public Builder monitorNull() { this.monitorNull = true; return this; }

        /** Console on or off; default: on when a guest is booted. */
        public Builder console(boolean on) { this.console = on; return this; }

        /**
         * The console's device ({@code isa-serial}, {@code virtconsole}…; null: {@code -serial}) and index: {@code index}
         * null serial ports come before it.
         */
        public Builder console(String deviceType, int index) {
            if (index < 0) throw new IllegalArgumentException("console index must not be negative, got " + index);
            this.console = true;
            this.consoleDevice = deviceType;
            this.consoleIndex = index;
            return this;
        }

        /** The {@code -machine} value; default {@code microvm,rtc=on,isa-serial=on} for kernel boots, else QEMU's. */
        public Builder machine(String type) { this.machineType = type; return this; }

        public Builder accelerator(Accelerator a) { this.accelerator = Objects.requireNonNull(a, "accelerator"); return this; }

        /** The guest agent channel (virtio-serial); default: on when a guest is booted. */
        public Builder agent(boolean on) { this.agent = on; return this; }

        /** Starts with the CPUs stopped ({@code -S}); the machine is then PAUSED. */
        public Builder paused(boolean on) { this.paused = on; return this; }

        /** Whether to pass {@code -nodefaults -no-user-config} (default true). */
        public Builder noDefaults(boolean on) { this.noDefaults = on; return this; }

        /** Adds a second QMP monitor used only for passing files ({@link #passFile}, {@link #addFileToSet}). */
        public Builder fdPassing(boolean on) { this.fdPassing = on; return this; }

        /** Hands QEMU an open {@code file} at launch as {@code -add-fd fd=N,set=fdset,opaque=…}; Kiln picks N. */
        public Builder addFile(Path file, boolean writable, int fdset, String opaque) {
            addedFiles.add(new QemuOptions.AddedFile(Objects.requireNonNull(file, "file"), writable, fdset, opaque));
            return this;
        }

        /**
         * A virtio NIC on one end of a {@link dev.kiln.qemu.net.Cable}: its frames go over the cable's socket (QEMU's
         * {@code -netdev socket,fd=N}, each frame preceded by its length, 4 bytes big-endian), with the end's MAC
         * address. Its netdev id is {@code sock<n>}, n counting from 0.
         */
        public Builder nic(Cable.End end) {
            socketNics.add(new QemuOptions.SocketNic(NetworkEnds.socket(end), end.mac()));
            return this;
        }

        /** A virtio NIC plugged into a port of a Kiln {@link dev.kiln.qemu.net.Network}. */
        public Builder nic(Port port) {
            socketNics.add(new QemuOptions.SocketNic(NetworkEnds.socket(port), port.mac()));
            return this;
        }

        /** User-mode networking on or off (off drops its forwards). */
        public Builder userNetwork(boolean on) {
            return on ? userNetwork() : noUserNetwork();
        }

        /**
         * A byte-stream channel to the guest: a virtio-serial port named {@code name} (the guest finds it through
         * /sys/class/virtio-ports/*&#47;name); the host end is {@link QemuMachine#channel(String)}.
         */
        public Builder channel(String name) {
            if (name == null || name.isBlank() || channels.contains(name) || name.equals(AGENT_PORT_NAME)) {
                throw new IllegalArgumentException("channels: a channel name must be non-blank and unique: '" + name + "'");
            }
            channels.add(name);
            return this;
        }

        /**
         * How many commands can stream at once (default: one per 128 MiB of guest memory, 1 to 4): each slot is four
         * virtio-serial ports (a guest shell's control port, a command's stdin, stdout and stderr), whose receive buffers
         * cost the guest 2 MiB. Past that many, commands run through the agent alone, their output handed over when they
         * exit. 0: none (every command through the agent).
         */
        public Builder execSlots(int n) {
            if (n < 0 || n > MAX_EXEC_SLOTS) throw new IllegalArgumentException("execSlots must be 0.." + MAX_EXEC_SLOTS + ": " + n);
            this.execSlots = n;
            return this;
        }

        /** A virtio RNG (the guest's entropy need not wait for interrupts); on in {@link #microvmPreset}. */
        public Builder rng(boolean on) { this.rng = on; return this; }

        /**
         * The legacy-free microvm of Monogon's {@code RunMicroVM}: no PIC, PIT, RTC or ISA serial port, no option ROMs;
         * a virtio console (hvc0) as the console, a virtio RNG and a user-mode NIC (drop it with {@code noUserNetwork()}).
         */
        public Builder microvmPreset() {
            machineType = "microvm,x-option-roms=off,pic=off,pit=off,rtc=off,isa-serial=off";
            console("virtconsole", 0);
            rng = true;
            return userNetwork();
        }

        QemuOptions qemuOptions() {
            return new QemuOptions(binary, wrapper, args, machineType, accelerator, consoleDevice, consoleIndex, console,
                    agent, qmp, monitorTcp, monitorNull, sockDir, paused, noDefaults, fdPassing, rng, channels, socketNics,
                    addedFiles, execSlots);
        }

        /** The spec: the common settings and these QEMU options. */
        @Override
        public MachineSpec spec() {
            with(qemuOptions());
            return super.spec();
        }

        public QemuMachine build() {
            return QemuMachine.create(spec());
        }

        public QemuMachine start() {
            return build().start();
        }
    }
}
