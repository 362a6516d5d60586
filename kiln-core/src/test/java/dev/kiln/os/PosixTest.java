package dev.kiln.os;

import dev.kiln.ExitStatus;
import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import static dev.kiln.os.OsTestSupport.await;
import static dev.kiln.os.OsTestSupport.cloexec;
import static dev.kiln.os.OsTestSupport.readAll;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@ExtendWith(NoOsLeaks.class)
class PosixTest {
    @Test
    void pipeCarriesBytesAndReportsEndOfFileAsZero() throws Exception {
        Fd[] pipe = Posix.pipe();
        try (Fd in = pipe[0]) {
            byte[] buf = new byte[16];
            try (Fd out = pipe[1]) {
                assertThat(cloexec(in)).isTrue();
                assertThat(cloexec(out)).isTrue();
                Posix.writeFully(out, "xxhello".getBytes(StandardCharsets.UTF_8), 2, 5);
                assertThat(Posix.read(in, buf, 3, 10)).isEqualTo(5);
                assertThat(new String(buf, 3, 5, StandardCharsets.UTF_8)).isEqualTo("hello");
            }
            assertThat(Posix.read(in, buf, 0, buf.length)).as("end of file").isZero();
        }
    }

    @Test
    void fdCloseIsIdempotentAndStaleNumbersAreRefused() {
        Fd[] pipe = Posix.pipe();
        pipe[1].close();
        Fd fd = pipe[0];
        int number = fd.number();
        assertThat(fd).hasToString("Fd[" + number + "]");
        fd.close();
        fd.close();
        assertThat(fd.isOpen()).isFalse();
        assertThat(fd).hasToString("Fd[" + number + ", closed]");
        assertThatThrownBy(fd::number).isInstanceOf(KilnException.class).hasMessageContaining(String.valueOf(number));
    }

    @Test
    void writeToAPipeWithoutReaderNamesTheCallAndErrno() {
        Fd[] pipe = Posix.pipe();
        pipe[0].close();
        try (Fd out = pipe[1]) {
            // The JVM ignores SIGPIPE, so writing to a pipe without readers fails with EPIPE.
            assertThatThrownBy(() -> Posix.writeFully(out, new byte[] {1}, 0, 1))
                    .isInstanceOf(KilnException.class)
                    .hasMessageContaining("write(fd " + out.number())
                    .hasMessageContaining("EPIPE (Broken pipe)");
        }
    }

    @Test
    void setCloexecTogglesTheFlag() throws Exception {
        Fd[] pipe = Posix.pipe();
        try (Fd in = pipe[0]; Fd out = pipe[1]) {
            Posix.setCloexec(in, false);
            assertThat(cloexec(in)).isFalse();
            Posix.setCloexec(in, true);
            assertThat(cloexec(in)).isTrue();
            assertThat(cloexec(out)).isTrue();
        }
    }

    @Test
    void shutdownWakesAThreadBlockedReadingASocket() throws Exception {
        Fd[] pair = Posix.socketPair();
        try (Fd a = pair[0]; Fd peer = pair[1]) {
            assertThat(peer.isOpen()).isTrue();
            CompletableFuture<Integer> reader = CompletableFuture.supplyAsync(() -> Posix.read(a, new byte[8], 0, 8));
            Thread.sleep(100);
            assertThat(reader).isNotDone();
            Posix.shutdown(a);
            assertThat(reader.get(10, TimeUnit.SECONDS)).isZero();
        }
    }

    @Test
    void killReportsAMissingProcessAsFalse() {
        assertThat(Posix.kill(Integer.MAX_VALUE, 0)).isFalse();
        assertThat(Posix.kill(Posix.getpid(), 0)).isTrue();
        assertThat(Posix.getpid()).isEqualTo(ProcessHandle.current().pid());
        assertThatThrownBy(() -> Posix.kill(0, Posix.SIGTERM)).isInstanceOf(IllegalArgumentException.class);
    }

    @Test
    void waitpidOnAnAlreadyReapedChildFailsWithEchild() {
        SpawnedProcess child = Spawn.of("true").start();
        assertThat(await(child).code()).isZero();
        assertThatThrownBy(() -> Posix.waitpid(child.pid(), false))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("waitpid(pid " + child.pid() + ")")
                .hasMessageContaining("ECHILD");
    }

    @Test
    void mkfifoCreatesAFifo(@TempDir Path dir) throws Exception {
        Path fifo = dir.resolve("log.fifo");
        Posix.mkfifo(fifo, 0600);
        int mode = (Integer) Files.getAttribute(fifo, "unix:mode");
        assertThat(mode & 0170000).isEqualTo(0010000);
        assertThat(mode & 0777).isEqualTo(0600);
        assertThat(await(Spawn.of("test", "-p", fifo.toString()).start()).code()).isZero();
        assertThatThrownBy(() -> Posix.mkfifo(fifo, 0600))
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("mkfifo(" + fifo + ", 0600)")
                .hasMessageContaining("EEXIST");
    }

    @Test
    void exitStatusDecodesWaitStatuses() {
        assertThat(Posix.decode(7 << 8)).isEqualTo(ExitStatus.exitedWith(7));
        assertThat(Posix.decode(9)).isEqualTo(ExitStatus.killedBy(9, false));
        assertThat(Posix.decode(0x80 | 11)).isEqualTo(ExitStatus.killedBy(11, true));
        assertThat(ExitStatus.killedBy(9, false).shellCode()).isEqualTo(137);
        assertThat(ExitStatus.killedBy(11, true)).hasToString("killed by SIGSEGV (core dumped)");
        assertThat(ExitStatus.exitedWith(3)).hasToString("exited with code 3");
    }

    @Test
    void awaitReadableHonoursItsTimeoutAndSeesData() {
        Fd[] p = Posix.pipe();
        try {
            assertThat(Posix.awaitReadable(p[0], java.time.Duration.ofMillis(100))).isFalse();
            Posix.writeFully(p[1], new byte[] {1}, 0, 1);
            assertThat(Posix.awaitReadable(p[0], java.time.Duration.ofSeconds(5))).isTrue();
        } finally {
            p[0].close();
            p[1].close();
        }
    }
}
