package dev.kiln.qemu;

import dev.kiln.Backend;
import dev.kiln.BackendOptions;
import dev.kiln.os.Fd;

import java.net.InetSocketAddress;
import java.nio.file.Path;
import java.util.List;

/**
 * What only QEMU understands in a {@link dev.kiln.MachineSpec}: the binary, machine type, accelerator, console device,
 * QMP, channels, socket NICs, extra arguments. Made by {@link QemuMachine.Builder} ({@code builder().spec()} gives a
 * spec carrying them); a spec without them gets {@link #DEFAULTS}.
 */
public final class QemuOptions implements BackendOptions {
    /** A NIC on a socket handed to QEMU at spawn (a cable end, a switch port). */
    record SocketNic(Fd fd, String mac) {}

    /** A file handed to QEMU at spawn as {@code -add-fd}. */
    record AddedFile(Path file, boolean writable, int fdset, String opaque) {}

    /** QEMU's defaults: {@code qemu-system-x86_64} (or {@code $KILN_QEMU}), accelerator from {@code $KILN_ACCEL}, microvm for kernel boots. */
    public static final QemuOptions DEFAULTS = new QemuMachine.Builder().qemuOptions();

    final String binary;
    final List<String> wrapper;
    final List<String> args;
    final String machineType;
    final Accelerator accelerator;
    final String consoleDevice;
    final int consoleIndex;
    final Boolean console;
    final Boolean agent;
    final boolean qmp;
    final InetSocketAddress monitorTcp;
    final boolean monitorNull;
    final Path sockDir;
    final boolean paused;
    final boolean noDefaults;
    final boolean fdPassing;
    final boolean rng;
    final List<String> channels;
    final List<SocketNic> socketNics;
    final List<AddedFile> addedFiles;
    final int execSlots;

    QemuOptions(String binary, List<String> wrapper, List<String> args, String machineType, Accelerator accelerator,
                String consoleDevice, int consoleIndex, Boolean console, Boolean agent, boolean qmp,
                InetSocketAddress monitorTcp, boolean monitorNull, Path sockDir, boolean paused, boolean noDefaults,
                boolean fdPassing, boolean rng, List<String> channels, List<SocketNic> socketNics,
                List<AddedFile> addedFiles, int execSlots) {
        this.binary = binary;
        this.wrapper = List.copyOf(wrapper);
        this.args = List.copyOf(args);
        this.machineType = machineType;
        this.accelerator = accelerator;
        this.consoleDevice = consoleDevice;
        this.consoleIndex = consoleIndex;
        this.console = console;
        this.agent = agent;
        this.qmp = qmp;
        this.monitorTcp = monitorTcp;
        this.monitorNull = monitorNull;
        this.sockDir = sockDir;
        this.paused = paused;
        this.noDefaults = noDefaults;
        this.fdPassing = fdPassing;
        this.rng = rng;
        this.channels = List.copyOf(channels);
        this.socketNics = List.copyOf(socketNics);
        this.addedFiles = List.copyOf(addedFiles);
        this.execSlots = execSlots;
    }

    @Override
    public Backend backend() {
        return Backend.QEMU;
    }

    /** The QEMU binary: a path, or a name looked up on PATH. */
    public String binary() { return binary; }

    /** The {@code -machine} value; null: microvm for kernel boots, else QEMU's default. */
    public String machineType() { return machineType; }

    public Accelerator accelerator() { return accelerator; }

    /** Whether QEMU starts with its CPUs stopped ({@code -S}). */
    public boolean paused() { return paused; }

    public boolean qmp() { return qmp; }

    public List<String> channels() { return channels; }

    @Override
    public String toString() {
        return "QemuOptions[" + binary + (machineType != null ? ", -machine " + machineType : "") + ", " + accelerator
                + (paused ? ", paused" : "") + (qmp ? "" : ", no QMP") + (channels.isEmpty() ? "" : ", channels " + channels)
                + (socketNics.isEmpty() ? "" : ", " + socketNics.size() + " socket NICs")
                + (args.isEmpty() ? "" : ", args " + args) + "]";
    }
}
