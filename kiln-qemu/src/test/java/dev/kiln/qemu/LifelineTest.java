package dev.kiln.qemu;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;

/** A JVM that is SIGKILLed takes its QEMU with it: the lifeline's watcher kills QEMU and removes the work dir. */
@ExtendWith(QemuAvailable.class)
class LifelineTest {
    /** Runs in the child JVM: start a machine, say its pid and work dir, then wait to be killed. */
    public static void main(String[] args) throws Exception {
        QemuMachine vm = QemuMachine.builder().noGuest().paused(true).machine("none").memoryMib(16).start();
        System.out.println(vm.pid().orElseThrow() + " " + vm.workDir());
        System.out.flush();
        Thread.sleep(Duration.ofMinutes(5));
    }

    @Test
    void qemuDiesWithTheJvmThatStartedIt() throws Exception {
        String java = ProcessHandle.current().info().command().orElseThrow();
        Process child = new ProcessBuilder(java, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), LifelineTest.class.getName())
                .redirectError(ProcessBuilder.Redirect.INHERIT).start();
        long qemuPid;
        Path workDir;
        try (BufferedReader r = new BufferedReader(new InputStreamReader(child.getInputStream(), StandardCharsets.UTF_8))) {
            String line = r.readLine();
            assertThat(line).as("child JVM's report").isNotNull();
            String[] f = line.split(" ", 2);
            qemuPid = Long.parseLong(f[0]);
            workDir = Path.of(f[1]);
        } finally {
            if (!child.isAlive()) child.waitFor();
        }
        assertThat(ProcessHandle.of(qemuPid)).isPresent();
        assertThat(workDir).exists();
        child.destroyForcibly(); // SIGKILL: no shutdown hook, no finally
        assertThat(child.waitFor(10, TimeUnit.SECONDS)).isTrue();
        long deadline = System.nanoTime() + Duration.ofSeconds(2).toNanos();
        while (System.nanoTime() < deadline && (alive(qemuPid) || Files.exists(workDir))) Thread.sleep(20);
        assertThat(alive(qemuPid)).as("QEMU pid %d alive 2 s after its JVM was SIGKILLed", qemuPid).isFalse();
        assertThat(workDir).as("work dir after the JVM was SIGKILLed").doesNotExist();
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
