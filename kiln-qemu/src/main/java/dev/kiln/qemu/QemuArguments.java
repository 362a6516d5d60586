package dev.kiln.qemu;

import dev.kiln.GuestImage;
import dev.kiln.MachineSpec;
import dev.kiln.Nic;
import dev.kiln.Share;
import dev.kiln.support.HostCpu;
import dev.kiln.vmm.spi.AttachedDrive;
import dev.kiln.vmm.spi.Launch;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The QEMU command line of one launch, from the spec, the QEMU options, the chosen accelerator and the socket paths
 * Kiln listens on. Every {@code -chardev}, {@code -drive}, {@code -netdev}, {@code -device} and {@code -add-fd} value goes through
 * {@link QemuOption}, so paths with commas stay one value.
 */
final class QemuArguments {
    /** The user-mode network: its netdev id, range, the guest's address, the gateway and the guest's MAC. */
    static final String USER_NETDEV = "usernet0", USER_NET = "10.42.0.0/24", USER_GUEST_IP = "10.42.0.10",
            USER_GATEWAY = "10.42.0.2", USER_MAC = "02:72:82:bf:c3:56";
    /** The id of the memory backend when the guest's RAM is a file. */
    private static final String RAM_ID = "kiln-ram";

    /** Where Kiln listens or QEMU serves, and the fd numbers QEMU gets its inherited files at. */
    record Sockets(Path qmp, Path console, Path agent, List<Path> channels, Path fdMonitor,
                   List<Integer> socketNicFds, List<Integer> addedFileFds, List<Path> execPorts, List<Path> shareSockets,
                   Path uefiCode, Path uefiVars) {}

    private final MachineSpec spec;
    private final QemuOptions options;
    private final GuestImage image;
    private final List<AttachedDrive> drives;
    private final Accelerator accel;
    private final boolean incoming;
    private final Launch.MemoryFile memory;

    /**
     * {@code incoming}: the machine goes on from a saved state (QMP's migrate-incoming) instead of booting;
     * {@code memory}: a file to be the guest's RAM, or null.
     */
    QemuArguments(MachineSpec spec, QemuOptions options, GuestImage image, List<AttachedDrive> drives, Accelerator accel,
                  boolean incoming, Launch.MemoryFile memory) {
        this.spec = spec;
        this.options = options;
        this.image = image;
        this.drives = List.copyOf(drives);
        this.accel = accel;
        this.incoming = incoming;
        this.memory = memory;
    }

    boolean consoleOn() {
        return options.console != null ? options.console : image != null;
    }

    boolean agentOn() {
        // A bootable disk brings its own software: its agent port only when it says it runs the agent.
        return options.agent != null ? options.agent : image != null && (image.agent() || !image.firmwareBoot());
    }

    /** Whether the firmware boots the image's disk (no kernel on the command line). */
    boolean firmwareBoot() {
        return image != null && image.firmwareBoot();
    }

    /** Whether share {@code index} is served by virtiofsd (else by QEMU's 9p). */
    boolean virtiofs(int index) {
        return spec.shares().get(index).transport() != Share.Transport.NINE_P;
    }

    boolean anyVirtiofs() {
        for (int i = 0; i < spec.shares().size(); i++) if (virtiofs(i)) return true;
        return false;
    }

    /** Exec slots need the agent (which starts their guest shells) and QMP (their ports' events and queues). */
    int execSlots() {
        if (!agentOn() || !options.qmp) return 0;
        return options.execSlots >= 0 ? options.execSlots : Math.clamp(spec.memoryMib() / 128, 1, 4);
    }

    String machineType() {
        if (options.machineType != null) return options.machineType;
        // graphics=off: SeaBIOS then prints on the serial console (its boot failures too).
        if (firmwareBoot()) return "q35,graphics=off";
        return image != null ? "microvm,rtc=on,isa-serial=on" : null;
    }

    /**
     * Whether the kernel and initrd are left off the command line: a clone of a template on microvm has its kernel in
     * the template's memory already, and QEMU would hold a copy of both in each clone's heap for nothing (it only
     * hands them to the firmware at boot). It cannot boot again: it has no kernel to boot.
     */
    boolean kernelLeftOff() {
        return incoming && memory != null && isMicrovm();
    }

    private boolean isPcMachine() {
        String m = machineType();
        return m != null && (m.startsWith("q35") || m.startsWith("pc"));
    }

    boolean isMicrovm() {
        String m = machineType();
        return m != null && (m.equals("microvm") || m.startsWith("microvm,"));
    }

    List<String> build(Sockets s) {
        QemuCommandLine cl = new QemuCommandLine(options.binary).wrapper(options.wrapper);
        cl.option("-display", "none").option("-vga", "none");
        if (options.noDefaults) cl.flag("-nodefaults").flag("-no-user-config");
        if (options.qmp) {
            QemuOption mon = QemuOption.of("socket").set("id", "mon");
            if (options.monitorTcp != null) mon.set("host", options.monitorTcp.getHostString()).set("port", options.monitorTcp.getPort());
            else mon.set("path", s.qmp());
            cl.option("-chardev", mon.toString()).option("-mon", "chardev=mon,mode=control");
        }
        if (s.fdMonitor() != null) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "fdmon").set("server", "on").set("wait", "off")
                    .set("path", s.fdMonitor()).toString()).option("-mon", "chardev=fdmon,mode=control");
        }
        if (options.monitorNull) cl.option("-monitor", "null");
        String machine = machineType();
        if (memory != null) {
            // The file is the guest's RAM: written through when shared (a template), else mapped copy-on-write.
            cl.option("-object", QemuOption.of("memory-backend-file").set("id", RAM_ID).set("mem-path", memory.file())
                    .set("size", spec.memoryMib() + "M").set("share", memory.shared() ? "on" : "off").toString());
            machine = (machine != null ? machine + "," : "") + "memory-backend=" + RAM_ID;
        }
        if (memory == null && anyVirtiofs()) {
            // virtiofsd reads and writes the guest's buffers itself: the RAM must be memory it can map too.
            cl.option("-object", QemuOption.of("memory-backend-memfd").set("id", RAM_ID).set("size", spec.memoryMib() + "M")
                    .set("share", "on").toString());
            machine = (machine != null ? machine + "," : "") + "memory-backend=" + RAM_ID;
        }
        if (machine != null) cl.option("-machine", machine);
        // virtiofsd serves modern virtio only, and microvm's virtio-mmio devices are legacy unless told otherwise.
        if (isMicrovm() && anyVirtiofs()) cl.option("-global", "virtio-mmio.force-legacy=false");
        if (s.uefiVars() != null) {
            cl.option("-drive", QemuOption.of(null).set("if", "pflash").set("format", "raw").set("unit", 0).set("readonly", "on")
                    .set("file", s.uefiCode()).toString());
            cl.option("-drive", QemuOption.of(null).set("if", "pflash").set("format", "raw").set("unit", 1)
                    .set("file", s.uefiVars()).toString());
        }
        cl.option("-accel", accel.qemuName());
        if (accel == Accelerator.KVM) cl.option("-cpu", "host");
        cl.option("-m", Integer.toString(spec.memoryMib()));
        cl.option("-smp", Integer.toString(spec.cpus()));
        String mmioOrPci = isMicrovm() ? "device" : "pci";
        if (options.rng) cl.option("-device", QemuOption.of("virtio-rng-" + mmioOrPci).set("max-bytes", 1024).set("period", 1000).toString());
        for (int i = 0; i < options.consoleIndex; i++) cl.option("-serial", "null");
        boolean console = consoleOn();
        boolean virtioConsole = console && options.consoleDevice != null
                && (options.consoleDevice.startsWith("virtconsole") || options.consoleDevice.startsWith("virtserialport"));
        if (agentOn() || virtioConsole || !options.channels.isEmpty()) {
            cl.option("-device", QemuOption.of("virtio-serial-" + mmioOrPci).set("max_ports", 16).toString());
        }
        if (console) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "console").set("path", s.console()).toString());
            if (options.consoleDevice == null) cl.option("-serial", "chardev:console");
            else cl.option("-device", options.consoleDevice + ",chardev=console");
        }
        if (agentOn()) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "qga").set("server", "on").set("wait", "off")
                    .set("path", s.agent()).toString());
            cl.option("-device", QemuOption.of("virtserialport").set("id", QemuDriver.AGENT_PORT_ID).set("chardev", "qga")
                    .set("name", QemuMachine.AGENT_PORT_NAME).toString());
        }
        for (int i = 0; i < options.channels.size(); i++) {
            cl.option("-chardev", QemuOption.of("socket").set("id", "chan" + i).set("path", s.channels().get(i)).toString());
            cl.option("-device", QemuOption.of("virtserialport").set("id", "chanport" + i).set("chardev", "chan" + i)
                    .set("name", options.channels.get(i)).toString());
        }
        // The exec ports have a device of their own (beside a virtio console on one device, some counts of ports left
        // the guest's hvc0 unopenable), made after the other ports so that theirs is the first device's bus.
        if (!s.execPorts().isEmpty()) {
            cl.option("-device", QemuOption.of("virtio-serial-" + mmioOrPci).set("id", QemuExecPorts.SERIAL_ID)
                    .set("max_ports", s.execPorts().size() + 1).toString()); // port 0 stays free: it is a console's
        }
        for (int i = 0; i < s.execPorts().size(); i++) {
            String chardev = "exec" + i;
            // QEMU listens; Kiln connects when a slot is first used (after the guest's driver has set the ports up: every
            // port connected at boot adds a message that the guest's 32 control buffers may not have room for), or,
            // for a restore, before the state is loaded.
            cl.option("-chardev", QemuOption.of("socket").set("id", chardev).set("server", "on").set("wait", "off")
                    .set("path", s.execPorts().get(i)).toString());
            cl.option("-device", QemuOption.of("virtserialport").set("bus", QemuExecPorts.SERIAL_ID + ".0").set("nr", i + 1)
                    .set("id", QemuExecPorts.portId(i)).set("chardev", chardev).set("name", QemuExecPorts.portName(i)).toString());
        }
        for (AttachedDrive d : drives) {
            // The serial is how the guest tells the disks apart: virtio-mmio devices are probed in no set order.
            cl.option("-drive", QemuOption.of(null).set("file", d.file()).set("if", "none").set("id", "drive-" + d.id())
                    .set("format", d.format().qemuName()).set("readonly", d.readOnly() ? "on" : "off").toString());
            QemuOption blk = QemuOption.of("virtio-blk-" + mmioOrPci).set("drive", "drive-" + d.id()).set("serial", d.id());
            if (firmwareBoot() && d.id().equals(GuestImage.ROOT_DRIVE)) blk.set("bootindex", 0);
            cl.option("-device", blk.toString());
        }
        for (int i = 0; i < spec.shares().size(); i++) {
            Share share = spec.shares().get(i);
            String id = "fs" + i;
            if (virtiofs(i)) {
                cl.option("-chardev", QemuOption.of("socket").set("id", id).set("path", s.shareSockets().get(i)).toString());
                cl.option("-device", QemuOption.of(isMicrovm() ? "vhost-user-fs-device" : "vhost-user-fs-pci").set("chardev", id)
                        .set("tag", Share.tag(i)).toString());
            } else {
                QemuOption fsdev = QemuOption.of("local").set("id", id).set("path", share.hostDir()).set("security_model", "none");
                if (share.readOnly()) fsdev.set("readonly", "on");
                cl.option("-fsdev", fsdev.toString());
                cl.option("-device", QemuOption.of("virtio-9p-" + mmioOrPci).set("fsdev", id).set("mount_tag", Share.tag(i)).toString());
            }
        }
        spec.vsockCid().ifPresent(cid -> cl.option("-device", QemuOption.of("vhost-vsock-" + mmioOrPci).set("guest-cid", cid).toString()));
        if (image != null) {
            if (!kernelLeftOff() && !firmwareBoot()) {
                cl.option("-kernel", image.kernel().toString());
                if (image.initrd() != null) cl.option("-initrd", image.initrd().toString());
                cl.option("-append", kernelCmdline());
            }
            cl.flag("-no-reboot");
        }
        // A restored copy gets a new VM generation id, and the guest kernel reseeds its RNG at once (Linux's vmgenid
        // driver). It needs ACPI tables of the PC machines; microvm has none for it.
        if (image != null && isPcMachine()) cl.option("-device", "vmgenid,guid=auto");
        if (options.paused) cl.flag("-S");
        if (incoming) cl.option("-incoming", "defer");
        for (int i = 0; i < options.addedFiles.size(); i++) {
            QemuOptions.AddedFile f = options.addedFiles.get(i);
            cl.option("-add-fd", QemuOption.of(null).set("fd", s.addedFileFds().get(i)).set("set", f.fdset())
                    .setIfPresent("opaque", f.opaque()).toString());
        }
        String nic = "virtio-net-" + mmioOrPci;
        spec.userNetwork().ifPresent(user -> {
            QemuOption net = QemuOption.of("user").set("id", USER_NETDEV).set("net", USER_NET).set("dhcpstart", USER_GUEST_IP);
            for (Nic.Forward f : user.forwards()) net.set("hostfwd", hostfwd(f));
            cl.option("-netdev", net.toString());
            cl.option("-device", QemuOption.of(nic).set("netdev", USER_NETDEV).set("mac", USER_MAC).toString());
        });
        int taps = 0;
        for (Nic n : spec.nics()) {
            if (n instanceof Nic.Tap tap) {
                String id = "tap" + taps++;
                cl.option("-netdev", QemuOption.of("tap").set("id", id).set("ifname", tap.device())
                        .set("script", "no").set("downscript", "no").toString());
                cl.option("-device", QemuOption.of(nic).set("netdev", id).setIfPresent("mac", tap.mac()).toString());
            }
        }
        for (int i = 0; i < options.socketNics.size(); i++) {
            QemuOptions.SocketNic n = options.socketNics.get(i);
            cl.option("-netdev", QemuOption.of("socket").set("id", "sock" + i).set("fd", s.socketNicFds().get(i)).toString());
            cl.option("-device", QemuOption.of(nic).set("netdev", "sock" + i).setIfPresent("mac", n.mac()).toString());
        }
        cl.raw(options.args);
        return cl.build();
    }

    /** The MAC of each NIC, in the order they are put on the command line (null: QEMU picks one). */
    List<String> nicMacs() {
        List<String> macs = new ArrayList<>();
        spec.userNetwork().ifPresent(u -> macs.add(USER_MAC));
        for (Nic n : spec.nics()) if (n instanceof Nic.Tap tap) macs.add(tap.mac());
        for (QemuOptions.SocketNic n : options.socketNics) macs.add(n.mac());
        return macs;
    }

    static String hostfwd(Nic.Forward f) {
        return "tcp:127.0.0.1:" + f.hostPort() + "-:" + f.guestPort();
    }

    /** The kernel command line: console, the TSC fix for microvm under TCG, the image's, the spec's. */
    String kernelCmdline() {
        List<String> parts = new ArrayList<>();
        if (consoleOn() && options.consoleDevice == null) parts.add("console=ttyS" + options.consoleIndex);
        if (consoleOn() && options.consoleDevice != null && options.consoleDevice.startsWith("virtconsole")) {
            parts.add("console=hvc0");
        }
        if (spec.userNetwork().isPresent()) parts.add("kiln.ip=" + USER_GUEST_IP + "/24," + USER_GATEWAY);
        if (isMicrovm() && accel == Accelerator.TCG) {
            // microvm has no HPET/PM timer: under TCG the kernel's PIT calibration of the TSC fails about
            // one boot in ten and the boot hangs. Telling it the TSC frequency avoids the calibration.
            long khz = HostCpu.tscKhz();
            if (khz > 0) parts.add("tsc_early_khz=" + khz);
        }
        // microvm has no reset device the kernel knows; a triple fault resets it, and -no-reboot turns that
        // reset (a reboot, or a panic with panic=-1) into QEMU exiting instead of a guest stuck in its reboot loop.
        if (isMicrovm()) parts.add("reboot=t");
        if (!image.cmdline().isBlank()) parts.add(image.cmdline());
        if (!spec.kernelArgs().isBlank()) parts.add(spec.kernelArgs());
        return String.join(" ", parts);
    }
}
