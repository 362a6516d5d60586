package dev.kiln.cli;

import dev.kiln.Backend;
import dev.kiln.CloudInit;
import dev.kiln.Firmware;
import dev.kiln.Share;
import dev.kiln.GuestImage;
import dev.kiln.Kiln;
import dev.kiln.Machine;
import dev.kiln.MachineSpec;
import dev.kiln.firecracker.FirecrackerMachine;
import dev.kiln.image.DefaultImage;
import dev.kiln.qemu.Accelerator;
import dev.kiln.qemu.QemuMachine;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.file.Path;
import java.time.Duration;

/** The guest a command runs on ({@code kiln run}, {@code kiln shell}): its image, size and VMM, and how it is started. */
final class GuestOptions {
    @Option(names = "--backend", description = "qemu or firecracker (default: $KILN_BACKEND, else qemu)")
    String backend;

    @Option(names = "--memory", description = "guest memory in MiB (default ${DEFAULT-VALUE})", defaultValue = "256")
    int memoryMib;

    @Option(names = "--cpus", description = "virtual CPUs (default ${DEFAULT-VALUE})", defaultValue = "1")
    int cpus;

    @Option(names = "--accel", description = "QEMU: auto, kvm or tcg (default: $KILN_ACCEL or auto)")
    String accel;

    @Option(names = "--image", description = "default (Kiln's initramfs guest) or debian (systemd on a disk; built when"
            + " needed, with --packages, --release, --size)", defaultValue = "default")
    String imageKind;

    @picocli.CommandLine.ArgGroup(exclusive = false)
    ImageCommand.DebianOptions debian = new ImageCommand.DebianOptions();

    @Option(names = "--disk", description = "QEMU: boot this bootable disk (a cloud image, an appliance) by its firmware,"
            + " through an overlay; Kiln configures it with cloud-init and reaches it over SSH")
    Path disk;

    @Option(names = "--uefi", description = "boot a bootable disk by UEFI (OVMF) instead of SeaBIOS")
    boolean uefi;

    @Option(names = "--share", paramLabel = "DIR:GUESTPATH[:ro]", description = "share a host directory with the guest"
            + " (virtio-fs on QEMU; read-only shares only on Firecracker); repeatable")
    java.util.List<String> shares = new java.util.ArrayList<>();

    @Option(names = "--kernel", description = "boot this kernel instead of the default image's")
    Path kernel;

    @Option(names = "--initrd", description = "with --kernel: the initramfs")
    Path initrd;

    @Option(names = "--append", description = "extra kernel arguments")
    String append;

    @Option(names = "--timeout", description = "limit for boot and for CMD, in seconds (default ${DEFAULT-VALUE})",
            defaultValue = "120")
    int timeoutSeconds;

    @Option(names = "--cold", description = "boot the guest and save it anew, even when a saved one is cached")
    boolean cold;

    private String description = "";

    /** A started machine, and how it came to be. */
    record Started(Machine machine, long tStart, long tVm, String how) {}

    Duration timeout() {
        return Duration.ofSeconds(timeoutSeconds);
    }

    /** The image, memory and CPUs, once {@link #start} chose them. */
    String describe() {
        return description;
    }

    /**
     * Starts the guest: on QEMU a clone of the template of an earlier run (booted and saved first when there is none,
     * or with --cold); otherwise a boot. Progress goes to {@code err}.
     */
    Started start(PrintStream err) {
        Duration timeout = timeout();
        Backend chosen = backend != null ? Backend.parse(backend) : Backend.fromEnvironment();
        if (accel != null && chosen != Backend.QEMU) throw new IllegalArgumentException("--accel is QEMU's; this run is on " + chosen.displayName());
        Accelerator accelerator = accel != null ? Accelerator.parse(accel) : null;
        if (chosen == Backend.FIRECRACKER) FirecrackerMachine.requireGuestBootableHost(); // before an image is built for nothing
        GuestImage image;
        if (disk != null) {
            if (kernel != null || !imageKind.equals("default")) throw new IllegalArgumentException("--disk, --kernel and --image are alternatives");
            image = GuestImage.bootableDisk(disk.toAbsolutePath(), disk.getFileName().toString());
        } else if (kernel != null) {
            if (!imageKind.equals("default")) throw new IllegalArgumentException("--kernel and --image are alternatives");
            image = new GuestImage(kernel, initrd, "", null, false, kernel.toString());
        } else {
            if (initrd != null) throw new IllegalArgumentException("--initrd needs --kernel");
            image = switch (imageKind) {
                case "default" -> {
                    if (!debian.isDefault()) throw new IllegalArgumentException("--packages, --release, --size, --copy, --build-run, --bootable and --no-agent need --image debian");
                    yield DefaultImage.get(err::println);
                }
                case "debian" -> debian.builder().build(err::println);
                default -> throw new IllegalArgumentException("unknown --image '" + imageKind + "': default or debian");
            };
        }
        if (uefi && !image.firmwareBoot()) throw new IllegalArgumentException("--uefi needs a disk its firmware boots: --disk, or --image debian --bootable");
        MachineSpec.Builder b = MachineSpec.builder().backend(chosen).image(image).memoryMib(memoryMib).cpus(cpus)
                .kernelArgs(append != null ? append : "").launchTimeout(timeout).readyTimeout(timeout);
        for (String share : shares) b.share(parseShare(share));
        // An image without Kiln's agent is configured by cloud-init and reached over SSH.
        if (!image.agent() && image.rootDisk() != null) b.cloudInit(CloudInit.defaults());
        if (uefi) b.firmware(Firmware.UEFI);
        MachineSpec spec = b.build();
        if (accelerator != null) spec = QemuMachine.builder().from(spec).accelerator(accelerator).spec();
        // QEMU guests are booted once and saved as a template; every run then clones it. Firecracker's cannot be yet.
        BootSnapshots saved = chosen == Backend.QEMU && image.agent() && spec.shares().isEmpty()
                ? new BootSnapshots(spec, accelerator != null ? accelerator.name() : String.valueOf(System.getenv("KILN_ACCEL")), err) : null;
        long tStart = System.nanoTime();
        long tVm = tStart; // the machine the command runs in starts here: after the template, when this run makes it
        Machine cloned = saved != null && !cold ? saved.restore(spec) : null;
        boolean made = false;
        if (cloned == null && saved != null) {
            made = saved.make(spec);
            tVm = System.nanoTime();
            if (made) cloned = saved.restore(spec);
        }
        if (cloned == null) tVm = System.nanoTime();
        description = image.description() + ", " + memoryMib + " MiB, " + cpus + " vCPU";
        String how = cloned == null ? "booted" : made ? "booted, saved as the template for later runs in " + saved.dir() + ", and cloned"
                : "cloned from the saved guest " + saved.dir() + " (--cold boots it anew)";
        if (cloned != null) return new Started(cloned, tStart, tVm, how);
        Machine vm = Kiln.create(spec);
        try {
            vm.start();
        } catch (RuntimeException e) {
            vm.close();
            throw e;
        }
        return new Started(vm, tStart, tVm, how);
    }

    /** {@code DIR:GUESTPATH[:ro]}. */
    static Share parseShare(String value) {
        String[] parts = value.split(":", -1);
        boolean ro = parts.length == 3 && parts[2].equals("ro");
        if (parts.length < 2 || parts.length > 3 || (parts.length == 3 && !ro) || parts[0].isEmpty()) {
            throw new IllegalArgumentException("--share takes DIR:GUESTPATH or DIR:GUESTPATH:ro, got '" + value + "'");
        }
        return new Share(Path.of(parts[0]), parts[1], ro, Share.Transport.AUTO);
    }
}
