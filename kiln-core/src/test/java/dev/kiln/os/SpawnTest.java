package dev.kiln.os;

import dev.kiln.ExitStatus;
import dev.kiln.KilnException;
import dev.kiln.os.Spawn.Redirect;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.ExtendWith;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;

import static dev.kiln.os.OsTestSupport.TIMEOUT;
import static dev.kiln.os.OsTestSupport.await;
import static dev.kiln.os.OsTestSupport.readAll;
import static dev.kiln.os.OsTestSupport.target;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

@ExtendWith(NoOsLeaks.class)
class SpawnTest {
    /** Runs {@code spawn} with stdout into a pipe and returns what the child printed and how it ended. */
    private record Run(String stdout, ExitStatus status) {}

    private static Run run(Spawn spawn) {
        Fd[] pipe = Posix.pipe();
        SpawnedProcess child;
        try (Fd out = pipe[1]) {
            child = spawn.withStdout(Redirect.fd(out)).start();
        }
        try (Fd in = pipe[0]) {
            return new Run(readAll(in), await(child));
        }
    }

    @Test
    void extraFdAppearsAsThree() {
        Fd[] pipe = Posix.pipe();
        SpawnedProcess child;
        try (Fd out = pipe[1]) {
            child = Spawn.of("/bin/sh", "-c", "echo hi >&3; exit 7").withStderr(Redirect.devNull()).withExtraFds(out).start();
        }
        try (Fd in = pipe[0]) {
            assertThat(readAll(in)).isEqualTo("hi\n");
        }
        ExitStatus status = await(child);
        assertThat(status).isEqualTo(ExitStatus.exitedWith(7));
        assertThat(status.shellCode()).isEqualTo(7);
        assertThat(Spawn.childFdOf(0)).isEqualTo(3);
    }

    @Test
    void extraFdsKeepTheirOrderWhenSourcesCollideWithTargets() throws Exception {
        List<Fd> all = new ArrayList<>();
        try {
            List<Fd> sources = new ArrayList<>();
            for (int i = 0; i < 64; i++) {
                Fd[] pipe = Posix.pipe();
                all.addAll(List.of(pipe));
                sources.add(pipe[i % 2]);
            }
            // Descending numbers put low sources (which are also targets) at indexes that move them elsewhere.
            sources.sort(Comparator.comparingInt(Fd::number).reversed());
            int last = Spawn.childFdOf(sources.size() - 1);
            assertThat(sources).as("some source numbers collide with targets 3..%d", last)
                    .anyMatch(fd -> fd.number() <= last && fd.number() != Spawn.childFdOf(sources.indexOf(fd)));
            List<String> expected = new ArrayList<>();
            for (int i = 0; i < sources.size(); i++) expected.add(Spawn.childFdOf(i) + " " + target(sources.get(i).number()));

            Run run = run(Spawn.of("/bin/sh", "-c",
                            "for i in $(seq 3 " + last + "); do echo \"$i $(readlink /proc/self/fd/$i)\"; done")
                    .withExtraFds(sources));

            assertThat(run.stdout().lines().toList()).containsExactlyElementsOf(expected);
            assertThat(run.status().code()).isZero();
        } finally {
            all.forEach(Fd::close);
        }
    }

    @Test
    void childInheritsNothingButStdioAndExtras() {
        Fd[] extra = Posix.pipe();
        extra[1].close();
        try (Fd in = extra[0]) {
            Run run = run(Spawn.of("ls", "-1", "/proc/self/fd").withExtraFds(in));
            Set<String> listed = run.stdout().lines().collect(Collectors.toSet());
            // One more descriptor than 0..3: the one ls itself opened to read the directory.
            assertThat(listed).contains("0", "1", "2", "3").hasSize(5);
            assertThat(run.status().code()).isZero();
        }
    }

    @Test
    void childStartsWithNoBlockedOrIgnoredSignals() {
        Run run = run(Spawn.of("cat", "/proc/self/status"));
        assertThat(run.stdout().lines().filter(l -> l.startsWith("SigBlk:") || l.startsWith("SigIgn:")))
                .containsExactly("SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000");
    }

    @Test
    void killedBySignal() {
        SpawnedProcess child = Spawn.of("sleep", "30").start();
        assertThat(child.waitFor(Duration.ofMillis(100))).isEmpty();
        assertThat(child.exitStatus()).isEmpty();
        assertThat(child.signal(Posix.SIGKILL)).isTrue();
        ExitStatus status = await(child);
        assertThat(status.exited()).isFalse();
        assertThat(status.signal()).isEqualTo(9);
        assertThat(status.shellCode()).isEqualTo(137);
        assertThat(child.signal(Posix.SIGKILL)).as("no signal after reaping").isFalse();
        assertThat(child.exitStatus()).contains(status);
        assertThat(child.waitFor()).isEqualTo(status);
    }

    @Test
    void missingProgramIsAClearErrorAndLeavesNoChild() {
        Set<Long> before = children();
        for (String program : List.of("kiln-no-such-program", "/nonexistent/kiln-no-such-program")) {
            assertThatThrownBy(() -> Spawn.of(program, "arg").start())
                    .isInstanceOf(KilnException.class)
                    .hasMessageContaining("'" + program + "'")
                    .hasMessageContaining("ENOENT");
        }
        assertThat(children()).isSubsetOf(before);
    }

    private static Set<Long> children() {
        return ProcessHandle.current().children().map(ProcessHandle::pid).collect(Collectors.toSet());
    }

    @Test
    void stdoutAppendsToAFileAndStderrFollowsIt(@TempDir Path dir) throws Exception {
        Path existing = dir.resolve("existing.log");
        Files.writeString(existing, "before\n");
        Path fresh = dir.resolve("fresh.log");
        for (Path log : List.of(existing, fresh)) {
            SpawnedProcess child = Spawn.of("/bin/sh", "-c", "echo out; echo err >&2; exit 1")
                    .withStdout(Redirect.file(log)).withStderr(Redirect.sameAsStdout()).start();
            assertThat(await(child).code()).isEqualTo(1);
        }
        assertThat(Files.readString(existing)).isEqualTo("before\nout\nerr\n");
        assertThat(Files.readString(fresh)).isEqualTo("out\nerr\n");
        assertThat(PosixFilePermissions.toString(Files.getPosixFilePermissions(fresh))).isEqualTo("rw-------");
    }

    @Test
    void stdinFromAFileOrAPipe(@TempDir Path dir) throws Exception {
        Path input = dir.resolve("input.txt");
        Files.writeString(input, "from file");
        assertThat(run(Spawn.of("cat").withStdin(Redirect.file(input))).stdout()).isEqualTo("from file");

        Fd[] stdin = Posix.pipe();
        Fd[] stdout = Posix.pipe();
        SpawnedProcess child;
        try (Fd in = stdin[0]; Fd out = stdout[1]) {
            child = Spawn.of("cat").withStdin(Redirect.fd(in)).withStdout(Redirect.fd(out)).start();
        }
        try (Fd feed = stdin[1]) {
            byte[] bytes = "from pipe".getBytes(StandardCharsets.UTF_8);
            Posix.writeFully(feed, bytes, 0, bytes.length);
        }
        try (Fd result = stdout[0]) {
            assertThat(readAll(result)).isEqualTo("from pipe");
        }
        assertThat(await(child).code()).isZero();
    }

    @Test
    void environmentAndDirectory(@TempDir Path dir) throws Exception {
        Run run = run(Spawn.of("/bin/sh", "-c", "printf '%s|%s' \"$KILN_VAR\" \"$(pwd)\"")
                .withEnvironment(java.util.Map.of("KILN_VAR", "a value")).withDirectory(dir));
        assertThat(run.stdout()).isEqualTo("a value|" + dir.toRealPath());

        Path missing = dir.resolve("missing");
        assertThatThrownBy(() -> Spawn.of("true").withDirectory(missing).start())
                .isInstanceOf(KilnException.class)
                .hasMessageContaining("'true'")
                .hasMessageContaining(missing.toString())
                .hasMessageContaining("ENOENT");
    }

    @Test
    void newSessionMakesTheChildLeadItsGroup() throws Exception {
        SpawnedProcess child = Spawn.of("sleep", "30").withNewSession(true).start();
        try {
            String stat = Files.readString(Path.of("/proc/" + child.pid() + "/stat"));
            String[] fields = stat.substring(stat.lastIndexOf(')') + 2).split(" ");
            // After "pid (comm) ": state, ppid, pgrp, session.
            assertThat(Long.parseLong(fields[1])).isEqualTo(Posix.getpid());
            assertThat(Long.parseLong(fields[2])).as("pgrp").isEqualTo(child.pid());
            assertThat(Long.parseLong(fields[3])).as("session").isEqualTo(child.pid());
            assertThat(Posix.killGroup(child.pid(), Posix.SIGTERM)).isTrue();
        } finally {
            child.signal(Posix.SIGKILL);
        }
        assertThat(await(child).signal()).isEqualTo(Posix.SIGTERM);
    }

    @Test
    void allWaysOfWaitingAgreeAndReapOnce() throws Exception {
        SpawnedProcess child = Spawn.of("/bin/sh", "-c", "exit 3").start();
        ExitStatus viaFuture = child.onExit().get(TIMEOUT.toSeconds(), TimeUnit.SECONDS);
        assertThat(viaFuture).isEqualTo(ExitStatus.exitedWith(3));
        assertThat(child.waitFor()).isEqualTo(viaFuture);
        assertThat(child.exitStatus()).contains(viaFuture);
        assertThat(child.handle().pid()).isEqualTo(child.pid());
        assertThat(child.toString()).contains("exited with code 3");

        SpawnedProcess other = Spawn.of("/bin/sh", "-c", "sleep 0.2; exit 4").start();
        var future = other.onExit();
        assertThat(other.waitFor()).isEqualTo(ExitStatus.exitedWith(4));
        assertThat(future.get(TIMEOUT.toSeconds(), TimeUnit.SECONDS)).isEqualTo(ExitStatus.exitedWith(4));
    }

    @Test
    void tooFewDescriptorNumbersOrBadSpecsAreRefused() {
        assertThatThrownBy(() -> Spawn.of(List.of())).isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> Spawn.of("true").withStdout(Redirect.sameAsStdout())).isInstanceOf(IllegalArgumentException.class);
        assertThat(Spawn.of("true").withEnv("SECRET", "hunter2").toString()).doesNotContain("hunter2");
        assertThat(Arrays.asList(Spawn.of("a", "b").argv().toArray())).containsExactly("a", "b");
    }
}
