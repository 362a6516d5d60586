package dev.kiln.bench;

import dev.kiln.CloudInit;
import dev.kiln.Guest;
import dev.kiln.GuestChannel;
import dev.kiln.GuestImage;
import dev.kiln.Probe;
import dev.kiln.Share;
import dev.kiln.SshChannel;
import dev.kiln.agent.QgaGuest;
import dev.kiln.image.DebianImage;
import dev.kiln.qemu.QemuMachine;
import dev.kiln.support.WorkDir;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Locale;
import java.util.Random;
import java.util.function.Consumer;

/**
 * The cloud image's part of {@code kiln bench}: a Debian image with cloud-init, sshd and the guest agent, booted by
 * SeaBIOS from its own disk. In one guest, reached both over SSH ({@code ssh()}) and through its agent
 * ({@code agent()}): exec round trips over each, and a 100 MiB host file copied in by SFTP and by the agent against
 * reading it from a virtio-fs and a 9p share. Then the firmware boot against a direct kernel boot (Kiln's kernel and
 * initramfs) of an image with the same packages, interleaved, to the agent answering and to cloud-init done.
 */
final class CloudBenchmark {
    private static final Duration LONG = Duration.ofSeconds(300);
    private static final int MEMORY_MIB = 768, EXECS = 30, COPY_MIB = 100;
    private static final String[] PACKAGES = {"cloud-init", "openssh-server", "sudo"};
    private static final String FILE = "f";

    private final PeerBenchmark bench;
    private final int runs;
    private final Path scratch;
    private GuestImage bootable, direct;

    CloudBenchmark(PeerBenchmark bench, int runs, Path scratch) {
        this.bench = bench;
        this.runs = runs;
        this.scratch = scratch;
    }

    void run() throws Exception {
        System.err.println("kiln bench: cloud images (" + String.join(", ", PACKAGES) + "): bootable (SeaBIOS) and direct kernel boot");
        Consumer<String> quiet = line -> { };
        bootable = DebianImage.builder().bootable().packages(PACKAGES).build(quiet);
        direct = DebianImage.builder().packages(PACKAGES).build(quiet);
        bench.info().put("cloud_bootable_image", bootable.description());
        bench.info().put("cloud_direct_image", direct.description());
        Path dir = WorkDir.create(scratch, "cloud-");
        try {
            channels(dir);
            boots();
        } finally {
            WorkDir.delete(dir);
        }
        String g = "cloud image (" + MEMORY_MIB + " MiB), one guest";
        bench.compare(g + ": exec(\"true\") over SSH vs over the agent", "cloud.exec.ssh", "cloud.exec.agent", "agent (QGA)");
        bench.compare(g + ": " + COPY_MIB + " MiB host → guest, SFTP copyIn vs agent copyIn", "cloud.copy.sftp", "cloud.copy.agent", "agent copyIn");
        bench.compare(g + ": " + COPY_MIB + " MiB read from a virtio-fs share vs SFTP copyIn", "cloud.copy.virtiofs", "cloud.copy.sftp", "SFTP copyIn");
        bench.compare(g + ": " + COPY_MIB + " MiB read from a 9p share vs SFTP copyIn", "cloud.copy.9p", "cloud.copy.sftp", "SFTP copyIn");
        bench.compare(g + ": " + COPY_MIB + " MiB read from a 9p share vs a virtio-fs share", "cloud.copy.9p", "cloud.copy.virtiofs", "virtio-fs share");
        String b = "cloud image (" + MEMORY_MIB + " MiB): SeaBIOS boot vs direct kernel boot";
        bench.compare(b + ", start() → agent answers", "cloud.boot.firmware", "cloud.boot.direct", "direct kernel boot");
        bench.compare(b + ", start() → cloud-init done", "cloud.boot.firmware.cloudinit", "cloud.boot.direct.cloudinit", "direct kernel boot");
        bench.note("Cloud images: bootable " + bootable.description() + "; direct kernel boot " + direct.description() + ".");
        bench.note("Cloud image, one guest: guestChannel(SSH) with cloudInit(defaults()); ssh() and agent() of the same machine. "
                + "Share reads: `cat` to /dev/null after dropping the guest's caches, host wall time around the agent's exec.");
    }

    /** One guest with both channels and both shares: exec round trips, then the copies, round by round. */
    private void channels(Path dir) throws IOException {
        Path shared = Files.createDirectories(dir.resolve("share"));
        Path file = shared.resolve(FILE);
        byte[] chunk = new byte[1 << 20];
        Random random = new Random(42);
        try (OutputStream out = Files.newOutputStream(file)) {
            for (int i = 0; i < COPY_MIB; i++) {
                random.nextBytes(chunk);
                out.write(chunk);
            }
        }
        System.err.println("kiln bench: cloud guest over SSH and the agent: " + runs + " rounds of " + EXECS
                + " exec each, " + COPY_MIB + " MiB by SFTP, agent, virtio-fs and 9p");
        try (QemuMachine vm = QemuMachine.builder().image(bootable).memoryMib(MEMORY_MIB).cloudInit(CloudInit.defaults())
                .guestChannel(GuestChannel.SSH)
                .share(new Share(shared, "/mnt/virtiofs", true, Share.Transport.VIRTIOFS))
                .share(new Share(shared, "/mnt/9p", true, Share.Transport.NINE_P))
                .readyTimeout(LONG).start()) {
            bench.info().put("cloud_accelerator", vm.accelerator().toString());
            SshChannel ssh = vm.ssh();
            QgaGuest agent = vm.agent();
            agent.awaitReady(LONG);
            for (int i = 0; i < 10; i++) { // warm both channels up
                ssh.exec("true").orThrow();
                agent.exec("true").orThrow();
            }
            for (int round = 0; round < runs; round++) {
                for (int i = 0; i < EXECS; i++) { // alternated, so that both see the same load
                    long t = System.nanoTime();
                    ssh.exec("true").orThrow();
                    bench.sample("cloud.exec.ssh", "cloud guest: exec(\"true\") over SSH (ssh())").addNanos(System.nanoTime() - t);
                    t = System.nanoTime();
                    agent.exec("true").orThrow();
                    bench.sample("cloud.exec.agent", "cloud guest: exec(\"true\") over the agent (agent())").addNanos(System.nanoTime() - t);
                }
                long t = System.nanoTime();
                ssh.copyIn(file, "/root/f.sftp");
                bench.sample("cloud.copy.sftp", "cloud guest: SFTP copyIn of " + COPY_MIB + " MiB").addNanos(System.nanoTime() - t);
                checkSize(agent, "/root/f.sftp");
                t = System.nanoTime();
                agent.copyIn(file, "/root/f.agent", LONG);
                bench.sample("cloud.copy.agent", "cloud guest: agent copyIn of " + COPY_MIB + " MiB").addNanos(System.nanoTime() - t);
                checkSize(agent, "/root/f.agent");
                agent.succeed("rm -f /root/f.sftp /root/f.agent; sync");
                readShare(agent, "/mnt/virtiofs", "cloud.copy.virtiofs", "virtio-fs");
                readShare(agent, "/mnt/9p", "cloud.copy.9p", "9p");
                System.err.printf(Locale.ROOT, "kiln bench: cloud round %d/%d: exec SSH %.1f ms, agent %.1f ms; %d MiB SFTP %.0f ms, agent %.0f ms, "
                                + "virtio-fs %.0f ms, 9p %.0f ms%n", round + 1, runs, bench.lastOf("cloud.exec.ssh"), bench.lastOf("cloud.exec.agent"),
                        COPY_MIB, bench.lastOf("cloud.copy.sftp"), bench.lastOf("cloud.copy.agent"), bench.lastOf("cloud.copy.virtiofs"),
                        bench.lastOf("cloud.copy.9p"));
            }
        }
    }

    /** Reads the share's file to /dev/null with the guest's caches dropped: host wall time, and the guest's own clock. */
    private void readShare(Guest g, String mount, String key, String label) {
        g.succeed("sync; echo 3 > /proc/sys/vm/drop_caches");
        long t = System.nanoTime();
        String ns = g.succeed("s=$(date +%s%N); cat " + mount + "/" + FILE + " > /dev/null; e=$(date +%s%N); echo $((e - s))", LONG);
        bench.sample(key, "cloud guest: cat of " + COPY_MIB + " MiB from a " + label + " share (host wall time)").addNanos(System.nanoTime() - t);
        bench.sample(key + ".guest", "cloud guest: the same, by the guest's clock").addNanos(Long.parseLong(ns.strip()));
    }

    private static void checkSize(Guest g, String path) {
        String size = g.succeed("stat -c %s " + path).strip();
        if (!size.equals(Long.toString((long) COPY_MIB << 20))) throw new IllegalStateException(path + " has " + size + " bytes after the copy");
    }

    /** The bootable image against the direct kernel boot, interleaved; one unmeasured round of each first. */
    private void boots() {
        System.err.println("kiln bench: cloud images: " + runs + " SeaBIOS boots and direct kernel boots, interleaved");
        for (int i = -1; i < runs; i++) {
            boot(bootable, "firmware", "SeaBIOS, Debian's kernel and initramfs", i >= 0);
            boot(direct, "direct", "direct kernel boot, Kiln's kernel and initramfs", i >= 0);
            if (i >= 0) {
                System.err.printf(Locale.ROOT, "kiln bench: cloud boot %d/%d: agent SeaBIOS %.0f ms, direct %.0f ms; cloud-init done %.0f ms, %.0f ms%n",
                        i + 1, runs, bench.lastOf("cloud.boot.firmware"), bench.lastOf("cloud.boot.direct"),
                        bench.lastOf("cloud.boot.firmware.cloudinit"), bench.lastOf("cloud.boot.direct.cloudinit"));
            }
        }
    }

    /** start() returns once the agent answers (cloud-init not awaited); then cloud-init's end is awaited through the agent. */
    private void boot(GuestImage image, String kind, String what, boolean record) {
        QemuMachine vm = QemuMachine.builder().image(image).memoryMib(MEMORY_MIB)
                .cloudInit(CloudInit.builder().awaitDone(false).build()).readiness(Probe.agent()).readyTimeout(LONG).build();
        long[] linux = {-1};
        vm.console().watch("Linux version", () -> linux[0] = System.nanoTime());
        long t0 = System.nanoTime();
        try (vm) {
            vm.start();
            long ready = System.nanoTime() - t0;
            vm.guest().succeed("cloud-init status --wait >/dev/null", LONG);
            long done = System.nanoTime() - t0;
            if (record) {
                String key = "cloud.boot." + kind;
                if (linux[0] > 0) bench.sample(key + ".linux", "cloud image, " + what + ": start() → 'Linux version' on the console").addNanos(linux[0] - t0);
                bench.sample(key, "cloud image, " + what + ": start() → agent answers").addNanos(ready);
                bench.sample(key + ".cloudinit", "cloud image, " + what + ": start() → cloud-init done").addNanos(done);
            }
            vm.shutdown(Duration.ofSeconds(60));
        }
    }
}
