package dev.kiln.support;

import dev.kiln.KilnException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

/** Host tools run to their end, in the C locale, and killed with what they started when they overrun. */
class HostCommandTest {
    @TempDir
    Path dir;

    @Test
    void runsInTheCLocaleAndKeepsBothStreamsAndTheExitCode() {
        List<String> lines = new ArrayList<>();
        HostCommand.Result r = HostCommand.run(List.of("sh", "-c", "echo out; echo err >&2; echo $LC_ALL; exit 3"), dir,
                Duration.ofSeconds(30), "a test command", lines::add);
        assertThat(r.exitCode()).isEqualTo(3);
        assertThat(r.ok()).isFalse();
        assertThat(r.stdout()).isEqualTo("out\nC\n");
        assertThat(r.complaint()).isEqualTo("err");
        assertThat(lines).containsExactlyInAnyOrder("out", "err", "C");
    }

    @Test
    void aCommandThatOverrunsItsTimeIsKilledWithWhatItStarted() throws IOException {
        Path pidFile = dir.resolve("child.pid");
        // The command starts a child that would outlive it, then waits; both must be gone after the timeout.
        assertThatThrownBy(() -> HostCommand.run(List.of("sh", "-c", "sleep 600 & echo $! > " + pidFile + "; echo started; wait"),
                dir, Duration.ofSeconds(2), "a stuck command"))
                .isInstanceOf(KilnException.class).hasMessageContaining("a stuck command did not finish within 2 s")
                .hasMessageContaining("started");
        long child = Long.parseLong(Files.readString(pidFile).strip());
        ProcessHandle.of(child).ifPresent(h -> h.onExit().orTimeout(10, TimeUnit.SECONDS).join());
        assertThat(ProcessHandle.of(child).map(ProcessHandle::isAlive)).as("the command's child").isIn(Optional.empty(), Optional.of(false));
    }
}
