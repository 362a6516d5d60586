package dev.kiln.firecracker;

import dev.kiln.KilnException;
import dev.kiln.MachineState;
import dev.kiln.firecracker.api.model.Drive;
import dev.kiln.firecracker.api.model.InstanceState;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** The real jailer ({@code JAILER_BIN}, as root): the command line, the chroot layout, pids, cgroups, netns, cleanup. */
class JailerTest {
    private static final int NOBODY = 65534;

    @TempDir
    Path base;

    @AfterEach
    void nothingLeft() {
        LeakCheck.assertNoneLeft(base);
    }

    private FirecrackerMachine.Builder jailed(Jailer jailer) {
        return FirecrackerMachine.builder().binary(Binaries.firecracker()).noGuest().jailer(jailer);
    }

    private Jailer jailer() {
        return Jailer.of(NOBODY, NOBODY, base).withBinary(Binaries.jailer());
    }

    @Test
    void theCommandLineHasEveryOption() {
        Jailer j = Jailer.of(1000, 1001, Path.of("/srv/jailer")).withBinary("/usr/bin/jailer").withNetns(Path.of("/var/run/netns/x"))
                .withDaemonize(true).withNewPidNs(true).withCgroup("cpu.shares=10").withCgroupVersion(2)
                .withResourceLimit("no-file=1024").withParentCgroup("kiln");
        assertThat(j.commandLine("vm-1", Path.of("/opt/firecracker"), List.of("--api-sock", "/run/firecracker.socket")))
                .containsExactly("/usr/bin/jailer", "--id", "vm-1", "--exec-file", "/opt/firecracker", "--uid", "1000",
                        "--gid", "1001", "--chroot-base-dir", "/srv/jailer", "--netns", "/var/run/netns/x", "--daemonize",
                        "--new-pid-ns", "--cgroup", "cpu.shares=10", "--cgroup-version", "2", "--resource-limit",
                        "no-file=1024", "--parent-cgroup", "kiln", "--", "--api-sock", "/run/firecracker.socket");
        assertThatThrownBy(() -> j.withCgroup("cpu.shares")).hasMessageContaining("cpu.shares=10");
        assertThatThrownBy(() -> Jailer.requireJailId("no_underscores")).hasMessageContaining("letters, digits and '-'");
    }

    @Test
    void aJailedFirecrackerSeesOnlyItsChroot() throws Exception {
        Path disk = Files.write(base.resolve("disk.img"), new byte[8192]);
        Files.setPosixFilePermissions(disk, java.nio.file.attribute.PosixFilePermissions.fromString("rw-r--r--"));
        FirecrackerMachine vm = jailed(jailer()).build().start();
        Path root;
        try (vm) {
            Jail jail = vm.jail();
            root = jail.root();
            assertThat(root).isEqualTo(base.resolve(Path.of(Binaries.firecracker()).getFileName().toString()).resolve(vm.id()).resolve("root"));
            assertThat(root.resolve(Path.of(Binaries.firecracker()).getFileName())).isRegularFile();
            assertThat(root.resolve("dev/kvm")).exists();
            assertThat(vm.apiSocket()).isEqualTo(root.resolve("run/firecracker.socket"));
            assertThat(vm.commandLine()).contains("--chroot-base-dir", base.toString(), "--uid", "65534");
            assertThat(vm.api().describeInstance().id()).isEqualTo(vm.id());
            assertThat(Files.readString(jail.pidFile()).strip()).isEqualTo(Long.toString(vm.pid().orElseThrow()));
            assertThat(processUid(vm.pid().orElseThrow())).isEqualTo(NOBODY);
            // Resources go in by jailed path: a read-only drive readable by all is a hard link, a writable one a copy.
            String ro = jail.put(disk, false);
            assertThat(ro).isEqualTo("/disk.img");
            assertThat(Files.isSameFile(root.resolve("disk.img"), disk)).isTrue();
            vm.api().putGuestDriveByID(Drive.of("ro", ro, false, true));
            Path writable = Files.write(base.resolve("rw.img"), new byte[8192]);
            String rw = jail.put(writable, true);
            assertThat(Files.isSameFile(root.resolve("rw.img"), writable)).isFalse();
            assertThat(Files.getAttribute(root.resolve("rw.img"), "unix:uid")).isEqualTo(NOBODY);
            vm.api().putGuestDriveByID(Drive.of("rootfs", rw, true, false));
            // Outside paths mean nothing in the jail: Firecracker says so.
            assertThatThrownBy(() -> vm.api().putGuestDriveByID(Drive.of("outside", disk.toString(), false, true)))
                    .hasMessageContaining("400");
            // The log FIFO lives in the jail too, and works.
            vm.awaitLogMessage("Running Firecracker", java.time.Duration.ofSeconds(10));
        }
        assertThat(vm.state()).isEqualTo(MachineState.EXITED);
        assertThat(root.getParent()).doesNotExist();
        assertThat(disk).exists(); // the user's file is untouched
    }

    @Test
    void withANewPidNamespaceThePidComesFromThePidFile() throws Exception {
        FirecrackerMachine vm = jailed(jailer().withNewPidNs(true)).build().start();
        long pid = vm.pid().orElseThrow();
        assertThat(nsPids(pid)).as("NSpid of Firecracker").endsWith(" 1");
        assertThat(vm.api().describeInstance().state()).isEqualTo(InstanceState.NOT_STARTED);
        assertThat(vm.console().isOpen()).as("not daemonized: the console is attached").isTrue();
        vm.kill();
        assertThat(alive(pid)).isFalse();
    }

    /**
     * Firecracker is pid 1 of its pid namespace there, and pid 1 ignores SIGTERM: there is nothing to ask, so close()
     * kills it at once instead of waiting out the shutdown timeout.
     */
    @Test
    void closingAJailedFirecrackerInANewPidNamespaceDoesNotWaitForASigtermItIgnores() {
        FirecrackerMachine vm = jailed(jailer().withNewPidNs(true)).shutdownTimeout(java.time.Duration.ofSeconds(120)).build().start();
        long pid = vm.pid().orElseThrow();
        long t0 = System.nanoTime();
        vm.close();
        java.time.Duration took = java.time.Duration.ofNanos(System.nanoTime() - t0);
        assertThat(took).as("close() of a machine whose shutdown timeout is 120 s").isLessThan(java.time.Duration.ofSeconds(30));
        assertThat(alive(pid)).isFalse();
        assertThat(vm.exitCode()).hasValue(128 + 9);
        assertThat(vm.jail().jailDir()).doesNotExist();
        assertThat(vm.jail().jailDir().getParent()).as("the per-exec directory, empty now").doesNotExist();
    }

    @Test
    void daemonizedItLeavesOurProcessGroupYetDiesWithTheMachine() throws Exception {
        FirecrackerMachine vm = jailed(jailer().withDaemonize(true)).build().start();
        long pid = vm.pid().orElseThrow();
        assertThat(ProcessHandle.current().descendants().anyMatch(p -> p.pid() == pid)).as("a child of ours").isFalse();
        assertThat(vm.console().isOpen()).as("daemonized: no serial console").isFalse();
        assertThat(vm.api().getFirecrackerVersion().firecrackerVersion()).isEqualTo(Binaries.version());
        vm.close();
        assertThat(alive(pid)).isFalse();
    }

    @Test
    void daemonizedInANewPidNamespace() throws Exception {
        FirecrackerMachine vm = jailed(jailer().withDaemonize(true).withNewPidNs(true)).build().start();
        long pid = vm.pid().orElseThrow();
        assertThat(nsPids(pid)).endsWith(" 1");
        vm.kill();
        assertThat(alive(pid)).isFalse();
    }

    @Test
    void cgroupsAndResourceLimitsApplyAndTheCgroupIsRemoved() throws Exception {
        Assumptions.assumeTrue(Files.isDirectory(Path.of("/sys/fs/cgroup/cpu")), "needs the cgroup v1 cpu controller at /sys/fs/cgroup/cpu");
        FirecrackerMachine vm = jailed(jailer().withCgroup("cpu.shares=100").withResourceLimit("no-file=1024")).build().start();
        String exec = Path.of(Binaries.firecracker()).getFileName().toString();
        Path cgroup = Path.of("/sys/fs/cgroup/cpu", exec, vm.id());
        try (vm) {
            long pid = vm.pid().orElseThrow();
            assertThat(Files.readString(Path.of("/proc", Long.toString(pid), "cgroup"))).contains("cpu:/" + exec + "/" + vm.id());
            assertThat(Files.readString(cgroup.resolve("cpu.shares")).strip()).isEqualTo("100");
            assertThat(Files.readString(Path.of("/proc", Long.toString(pid), "limits"))).containsPattern("Max open files\\s+1024\\s+1024");
        }
        assertThat(cgroup).doesNotExist();
    }

    @Test
    void itJoinsTheNetworkNamespace() throws Exception {
        String ns = LeakCheck.ID_PREFIX + "ns";
        Assumptions.assumeTrue(run("ip", "netns", "add", ns) == 0, "cannot create a network namespace (needs ip and root)");
        try {
            Path nsFile = Path.of("/var/run/netns", ns);
            try (FirecrackerMachine vm = jailed(jailer().withNetns(nsFile)).build().start()) {
                Path fcNet = Path.of("/proc", Long.toString(vm.pid().orElseThrow()), "ns", "net");
                assertThat(Files.readSymbolicLink(fcNet).toString()).isEqualTo("net:[" + Files.getAttribute(nsFile, "unix:ino") + "]");
            }
        } finally {
            run("ip", "netns", "del", ns);
        }
    }

    @Test
    void aJailInUseIsRefusedAndAStaleOneReplaced() throws Exception {
        String exec = Path.of(Binaries.firecracker()).getFileName().toString();
        String id = LeakCheck.ID_PREFIX + "taken";
        Path stale = Files.createDirectories(base.resolve(exec).resolve(id).resolve("root"));
        Files.writeString(stale.resolve("left-behind"), "by a machine that is gone");
        try (FirecrackerMachine first = jailed(jailer()).id(id).start()) {
            assertThat(first.jail().root().resolve("left-behind")).doesNotExist();
            assertThatThrownBy(() -> jailed(jailer()).id(id).start()).isInstanceOf(KilnException.class)
                    .hasMessageContaining("already exists and a process runs in it");
            assertThat(first.api().describeInstance().id()).isEqualTo(id);
        }
    }

    private static int processUid(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith("Uid:")) return Integer.parseInt(line.split("\\s+")[1]);
        }
        throw new IllegalStateException("no Uid line");
    }

    private static String nsPids(long pid) throws IOException {
        for (String line : Files.readAllLines(Path.of("/proc", Long.toString(pid), "status"))) {
            if (line.startsWith("NSpid:")) return line.substring(6).strip().replaceAll("\\s+", " ");
        }
        throw new IllegalStateException("no NSpid line");
    }

    private static boolean alive(long pid) {
        return ProcessHandle.of(pid).map(ProcessHandle::isAlive).orElse(false) && Files.exists(Path.of("/proc", Long.toString(pid), "status"))
                && !zombie(pid);
    }

    private static boolean zombie(long pid) {
        try {
            return Files.readAllLines(Path.of("/proc", Long.toString(pid), "status")).stream().anyMatch(l -> l.startsWith("State:") && l.contains("Z"));
        } catch (IOException e) {
            return false;
        }
    }

    private static int run(String... argv) throws Exception {
        Process p = new ProcessBuilder(argv).redirectErrorStream(true).start();
        p.getInputStream().readAllBytes();
        return p.waitFor(30, TimeUnit.SECONDS) ? p.exitValue() : -1;
    }
}
