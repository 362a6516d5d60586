package dev.kiln.firecracker;

import dev.kiln.support.WorkDir;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * A JVM that is SIGKILLed takes its Firecracker with it, also when a forking jailer put Firecracker outside
 * the JVM's process tree (and, daemonized, outside its process group).
 */
class LifelineTest {
    @TempDir
    Path base;

    /** Runs in the child JVM: start a machine, say its pid and work dir, then wait to be killed. */
    public static void main(String[] args) throws Exception {
        FirecrackerMachine.Builder b = FirecrackerMachine.builder().noGuest();
        if (!args[0].equals("direct")) b.jailer(jailer(args[0], Path.of(args[1]))).id(args[2]);
        FirecrackerMachine vm = b.start();
        System.out.println(vm.pid().orElseThrow() + " " + vm.workDir());
        System.out.flush();
        Thread.sleep(Duration.ofMinutes(5));
    }

    @Test
    void firecrackerDiesWithTheJvm() throws Exception {
        Binaries.firecracker();
        diesWithTheJvm("direct");
    }

    @Test
    void aDaemonizedJailedFirecrackerDiesWithTheJvm() throws Exception {
        Binaries.jailer();
        diesWithTheJvm("daemonize");
    }

    @Test
    void aJailedFirecrackerInANewPidNamespaceDiesWithTheJvm() throws Exception {
        Binaries.jailer();
        diesWithTheJvm("newpidns");
    }

    private static Jailer jailer(String mode, Path base) {
        Jailer j = Jailer.of(65534, 65534, base).withDaemonize(mode.contains("daemonize")).withNewPidNs(mode.contains("newpidns"));
        return Files.isDirectory(CPU_CGROUPS) ? j.withCgroup("cpu.shares=100") : j;
    }

    private static final Path CPU_CGROUPS = Path.of("/sys/fs/cgroup/cpu");

    private static String idOf(String mode) {
        return LeakCheck.ID_PREFIX + "ll-" + mode.charAt(0); // short: the jail's API socket path is limited to 107 bytes
    }

    private void diesWithTheJvm(String mode) throws Exception {
        String java = ProcessHandle.current().info().command().orElseThrow();
        Process child = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), LifelineTest.class.getName(), mode, base.toString(), idOf(mode))
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        long pid;
        Path workDir;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            String line = r.readLine();
            assertThat(line).as("child JVM's report").isNotNull();
            String[] f = line.split(" ", 2);
            pid = Long.parseLong(f[0]);
            workDir = Path.of(f[1]);
        } finally {
            if (!child.isAlive()) child.waitFor();
        }
        assertThat(alive(pid)).isTrue();
        child.destroyForcibly(); // SIGKILL: no shutdown hook, no finally
        assertThat(child.waitFor(10, TimeUnit.SECONDS)).isTrue();
        long deadline = System.nanoTime() + Duration.ofSeconds(5).toNanos();
        while (System.nanoTime() < deadline && (alive(pid) || Files.exists(workDir))) Thread.sleep(20);
        assertThat(alive(pid)).as("Firecracker pid %d alive 5 s after its JVM was SIGKILLed (%s)", pid, mode).isFalse();
        assertThat(workDir).as("work dir after the JVM was SIGKILLed").doesNotExist();
        if (mode.equals("direct")) return;
        // The lifeline removed the jail, its cgroup and the per-exec directories too: a new machine with the same id starts.
        String exec = Path.of(Binaries.firecracker()).getFileName().toString();
        Path cgroup = CPU_CGROUPS.resolve(exec).resolve(idOf(mode));
        deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (System.nanoTime() < deadline && (Files.exists(base.resolve(exec)) || Files.exists(cgroup))) Thread.sleep(20);
        assertThat(base.resolve(exec)).as("the jail's per-exec directory after the JVM was SIGKILLed").doesNotExist();
        assertThat(cgroup).as("the jail's cgroup after the JVM was SIGKILLed").doesNotExist();
        try (FirecrackerMachine again = FirecrackerMachine.builder().noGuest().jailer(jailer(mode, base)).id(idOf(mode)).start()) {
            assertThat(again.api().describeInstance().id()).isEqualTo(idOf(mode));
        }
    }

    /** Alive and not a zombie waiting for init to reap it. */
    private static boolean alive(long pid) throws Exception {
        Path stat = Path.of("/proc/" + pid + "/stat");
        if (!Files.exists(stat)) return false;
        try {
            String s = Files.readString(stat);
            return s.charAt(s.lastIndexOf(')') + 2) != 'Z';
        } catch (java.nio.file.NoSuchFileException e) {
            return false;
        }
    }
}
