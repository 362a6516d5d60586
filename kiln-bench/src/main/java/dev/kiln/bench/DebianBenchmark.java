package dev.kiln.bench;

import dev.kiln.Drive;
import dev.kiln.Guest;
import dev.kiln.GuestImage;
import dev.kiln.agent.QgaGuest;
import dev.kiln.disk.QemuImg;
import dev.kiln.image.DebianImage;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.WorkDir;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The Debian image's part of {@code kiln bench}: its build (cold and cached) and size; its boot to the ready marker and
 * to the agent under Kiln, against Kiln's default image and against raw QEMU booting the same disk, kernel, initramfs
 * and kernel command line; and {@code dd} through virtio-blk in the guest under both, by dd's own clock.
 */
final class DebianBenchmark {
    private static final Duration LONG = Duration.ofSeconds(300);
    private static final int MEMORY_MIB = 512, DD_MIB = 256;
    private static final String SCRATCH_ID = "bench", SCRATCH = "/dev/disk/by-id/virtio-" + SCRATCH_ID;
    private static final Pattern DD = Pattern.compile("(\\d+) bytes .* copied, ([0-9.]+) s");

    private final PeerBenchmark bench;
    private final GuestImage defaultImage;
    private final String binary;
    private final int runs;
    private final Path scratch;
    private GuestImage debian;
    /** Kiln's command line for the Debian guest: the raw peer takes its machine, accelerator and kernel arguments. */
    private List<String> kilnCommand = List.of();

    DebianBenchmark(PeerBenchmark bench, GuestImage defaultImage, String binary, int runs, Path scratch) {
        this.bench = bench;
        this.defaultImage = defaultImage;
        this.binary = binary;
        this.runs = runs;
        this.scratch = scratch;
    }

    void run() throws Exception {
        builds();
        System.err.println("kiln bench: Debian boots and dd (" + runs + " of each, interleaved: raw QEMU, Kiln, Kiln's default image)");
        kilnBoot(null);
        rawBoot(null);
        kilnDefaultBoot(null);
        for (int i = 0; i < runs; i++) {
            rawBoot(i);
            kilnBoot(i);
            kilnDefaultBoot(i);
            System.err.printf(Locale.ROOT, "kiln bench: Debian run %d/%d: marker raw %.0f ms, Kiln %.0f ms; write raw %.0f, Kiln %.0f MB/s%n",
                    i + 1, runs, bench.lastOf("debian.boot.raw"), bench.lastOf("debian.boot.kiln.marker"),
                    bench.lastOf("debian.dd.write.raw"), bench.lastOf("debian.dd.write.kiln"));
        }
        String g = "Debian image (" + MEMORY_MIB + " MiB)";
        bench.compare(g + ": boot to the ready marker, Kiln vs raw QEMU on the same disk and kernel", "debian.boot.kiln.marker", "debian.boot.raw", "raw qemu-system-x86_64");
        bench.compare(g + ": boot to agent ready vs Kiln's default image to agent ready", "debian.boot.kiln", "debian.default.kiln", "Kiln, default image");
        bench.compare(g + ": dd write through virtio-blk in the guest (MB/s; higher is better)", "debian.dd.write.kiln", "debian.dd.write.raw", "raw qemu-system-x86_64");
        bench.compare(g + ": dd read through virtio-blk in the guest (MB/s; higher is better)", "debian.dd.read.kiln", "debian.dd.read.raw", "raw qemu-system-x86_64");
        bench.compare(g + ": cached build (lookup) vs cold build", "debian.build.cached", "debian.build.cold", "cold build");
    }

    private void builds() {
        DebianImage.Builder recipe = DebianImage.builder();
        int cold = Math.min(runs, 3);
        System.err.println("kiln bench: Debian image builds: " + cold + " cold (--force, packages from Debian's mirror), " + runs + " cached");
        Consumer<String> quiet = line -> { };
        for (int i = 0; i < cold; i++) {
            long t = System.nanoTime();
            debian = recipe.build(true, quiet);
            bench.sample("debian.build.cold", "Debian image build, cold (mmdebstrap → mke2fs -d)").addNanos(System.nanoTime() - t);
        }
        for (int i = 0; i < runs; i++) {
            long t = System.nanoTime();
            recipe.build(false, quiet);
            bench.sample("debian.build.cached", "Debian image build, cached (hash of the inputs → lookup)").addNanos(System.nanoTime() - t);
        }
        Path dir = debian.rootDisk().getParent();
        DebianImage.list().stream().filter(c -> c.dir().equals(dir)).findFirst().ifPresent(c -> {
            bench.info().put("debian_image", c.description());
            bench.info().put("debian_disk_bytes", c.diskBytes());
            bench.info().put("debian_used_bytes", c.usedBytes());
            bench.note(String.format(Locale.ROOT, "Debian image (%s): disk %.0f MiB (sparse), %.0f MiB used.",
                    c.description(), c.diskBytes() / 1048576.0, c.usedBytes() / 1048576.0));
        });
    }

    private void kilnBoot(Integer run) {
        QemuMachine vm = QemuMachine.builder().image(debian).memoryMib(MEMORY_MIB)
                .drive(Drive.scratch((long) (DD_MIB + 16) << 20).id(SCRATCH_ID)).readyTimeout(LONG).build();
        long[] marker = {-1};
        vm.console().watch(debian.readyMarker(), () -> marker[0] = System.nanoTime());
        long t0 = System.nanoTime();
        try (vm) {
            vm.start();
            long ready = System.nanoTime() - t0;
            if (run == null) {
                kilnCommand = vm.commandLine();
                bench.info().putPOJO("debian_kiln_command", kilnCommand);
            }
            double[] dd = dd(vm.guest());
            if (run != null) {
                bench.sample("debian.boot.kiln.spawned", "Kiln, Debian: QEMU spawned (drives prepared: overlay, checks, locks)")
                        .addNanos(vm.startTimings().spawnedAfter().orElseThrow().toNanos());
                bench.sample("debian.boot.kiln", "Kiln, Debian: QemuMachine.start() → guest agent answers").addNanos(ready);
                if (marker[0] > 0) bench.sample("debian.boot.kiln.marker", "Kiln, Debian: start → ready marker on the console").addNanos(marker[0] - t0);
                bench.sample("debian.dd.write.kiln", "Kiln, Debian: dd write, " + DD_MIB + " MiB, oflag=direct", "MB/s").add(dd[0]);
                bench.sample("debian.dd.read.kiln", "Kiln, Debian: dd read, " + DD_MIB + " MiB, iflag=direct", "MB/s").add(dd[1]);
            }
            vm.shutdown(Duration.ofSeconds(60));
        }
    }

    private void kilnDefaultBoot(Integer run) {
        long t0 = System.nanoTime();
        try (QemuMachine vm = QemuMachine.builder().image(defaultImage).memoryMib(MEMORY_MIB).readyTimeout(LONG).start()) {
            if (run != null) bench.sample("debian.default.kiln", "Kiln, default image, " + MEMORY_MIB + " MiB: start() → agent answers").addNanos(System.nanoTime() - t0);
        }
    }

    /**
     * Raw QEMU from a shell, console on stdio: Kiln's machine type, accelerator, memory and kernel command line, the same
     * kernel and initramfs, a qcow2 overlay of the same disk, the same scratch disk and agent port.
     */
    private void rawBoot(Integer run) throws Exception {
        Path dir = WorkDir.create(scratch, "debian-raw-");
        try {
            Path overlay = dir.resolve("root.qcow2"), data = dir.resolve("bench.raw"), qga = dir.resolve("qga.sock");
            QemuImg.createOverlay(overlay, debian.rootDisk(), Drive.Format.RAW); // as Kiln makes the root overlay
            try (RandomAccessFile f = new RandomAccessFile(data.toFile(), "rw")) {
                f.setLength((long) (DD_MIB + 16) << 20);
            }
            List<String> cmd = new ArrayList<>(List.of(binary, "-display", "none", "-vga", "none", "-serial", "stdio",
                    "-machine", valueOf("-machine"), "-accel", valueOf("-accel"), "-m", Integer.toString(MEMORY_MIB), "-smp", "1",
                    "-nodefaults", "-no-user-config", "-no-reboot",
                    "-device", "virtio-serial-device",
                    "-chardev", "socket,id=qga,server=on,wait=off,path=" + qga,
                    "-device", "virtserialport,chardev=qga,name=" + QemuMachine.AGENT_PORT_NAME,
                    "-drive", "file=" + overlay + ",if=none,id=drive-root,format=qcow2,readonly=off",
                    "-device", "virtio-blk-device,drive=drive-root,serial=root",
                    "-drive", "file=" + data + ",if=none,id=drive-bench,format=raw,readonly=off",
                    "-device", "virtio-blk-device,drive=drive-bench,serial=" + SCRATCH_ID,
                    "-kernel", debian.kernel().toString(), "-initrd", debian.initrd().toString(), "-append", valueOf("-append")));
            String sh = "exec " + String.join(" ", cmd.stream().map(PeerBenchmark::shellQuote).toList());
            if (run == null) bench.info().put("debian_raw_command", sh);
            long t0 = System.nanoTime();
            Process p = new ProcessBuilder("/bin/sh", "-c", sh).redirectErrorStream(true).start();
            try {
                long ready = -1;
                BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
                for (String line; (line = out.readLine()) != null; ) {
                    if (line.contains(debian.readyMarker())) {
                        ready = System.nanoTime() - t0;
                        break;
                    }
                }
                if (ready < 0) throw new IllegalStateException("raw QEMU exited before the ready marker (exit " + p.waitFor() + ")");
                Thread.ofVirtual().start(() -> drain(out)); // the console must not block QEMU while dd runs
                try (QgaGuest agent = new QgaGuest(() -> connect(qga), () -> "", "raw-debian")) {
                    agent.awaitReady(LONG);
                    double[] dd = dd(agent);
                    if (run != null) {
                        bench.sample("debian.boot.raw", "raw QEMU, Debian, by a shell: spawn → ready marker on stdio").addNanos(ready);
                        bench.sample("debian.dd.write.raw", "raw QEMU, Debian: dd write, " + DD_MIB + " MiB, oflag=direct", "MB/s").add(dd[0]);
                        bench.sample("debian.dd.read.raw", "raw QEMU, Debian: dd read, " + DD_MIB + " MiB, iflag=direct", "MB/s").add(dd[1]);
                    }
                }
            } finally {
                p.destroy();
                if (!p.waitFor(30, TimeUnit.SECONDS)) p.destroyForcibly().waitFor();
            }
        } finally {
            WorkDir.delete(dir);
        }
    }

    /** Write then read the scratch disk with O_DIRECT; MB/s by dd's own clock. */
    private static double[] dd(Guest g) {
        g.waitForFile(SCRATCH, Duration.ofSeconds(30));
        String write = g.succeed("dd if=/dev/zero of=" + SCRATCH + " bs=1M count=" + DD_MIB + " oflag=direct 2>&1", LONG);
        String read = g.succeed("dd if=" + SCRATCH + " of=/dev/null bs=1M count=" + DD_MIB + " iflag=direct 2>&1", LONG);
        return new double[] {mbPerSecond(write), mbPerSecond(read)};
    }

    static double mbPerSecond(String ddOutput) {
        Matcher m = DD.matcher(ddOutput);
        if (!m.find()) throw new IllegalStateException("no throughput in dd's output: " + ddOutput);
        return Long.parseLong(m.group(1)) / 1e6 / Double.parseDouble(m.group(2));
    }

    private String valueOf(String option) {
        int i = kilnCommand.indexOf(option);
        if (i < 0 || i + 1 >= kilnCommand.size()) throw new IllegalStateException("Kiln's command line has no " + option + ": " + kilnCommand);
        return kilnCommand.get(i + 1);
    }

    private static SocketChannel connect(Path socket) {
        try {
            return SocketChannel.open(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    private static void drain(BufferedReader out) {
        try {
            while (out.readLine() != null) {
                // the guest's console after the marker: not measured
            }
        } catch (IOException ignored) {
            // QEMU has gone
        }
    }
}
