package dev.kiln.cli;

import dev.kiln.support.Executables;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Predicate;

import static org.assertj.core.api.Assertions.assertThat;

/**
 * {@code kiln shell} in a real terminal: a tmux session runs it, keys go in with {@code send-keys} and the screen is
 * read with {@code capture-pane}.
 */
class ShellCommandTest {
    private static final Duration WAIT = Duration.ofSeconds(120);
    private static final AtomicInteger SESSIONS = new AtomicInteger();
    // A tmux server per test: kill-server returns before the old server is gone, and a client that reaches a dying
    // server under the same name fails with "server exited unexpectedly".
    private final String session = "kiln-shell-test-" + ProcessHandle.current().pid() + "-" + SESSIONS.incrementAndGet();

    @AfterEach
    void killSession() {
        tmux(false, "kill-server");
    }

    @Test
    void aTerminalGetsARawShellOfTheRightSizeThatFollowsResizesAndCtrlRightBracketLeaves() throws Exception {
        Assumptions.assumeTrue(Executables.find("tmux").isPresent(), "tmux not on PATH: install tmux to run this test");
        Assumptions.assumeTrue(Executables.find("qemu-system-x86_64").isPresent(), "qemu-system-x86_64 not on PATH");
        startKiln("shell");

        type("echo kiln-$((6 * 7))", "Enter");
        awaitScreen(s -> s.contains("kiln-42"), "the guest shell's answer");

        String[] pane = tmux(true, "display-message", "-p", "-t", session, "#{pane_height} #{pane_width}").strip().split(" ");
        type("stty size", "Enter");
        awaitScreen(s -> s.contains(pane[0] + " " + pane[1]), "the guest's tty at the terminal's size " + pane[0] + "x" + pane[1]);

        tmux(true, "resize-window", "-t", session, "-x", "120", "-y", "40");
        String[] resized = tmux(true, "display-message", "-p", "-t", session, "#{pane_height} #{pane_width}").strip().split(" ");
        // The size follows on SIGWINCH, through the guest agent: ask again until it shows.
        String size = resized[0] + " " + resized[1];
        for (int i = 0; !screenShows(s -> s.contains(size), Duration.ofSeconds(2)); i++) {
            if (i == 30) awaitScreen(s -> s.contains(size), "the guest's tty at the new size " + size);
            type("stty size", "Enter");
        }

        // Raw: Ctrl-C reaches the guest (its shell interrupts sleep) rather than ending kiln.
        type("sleep 600", "Enter");
        type("C-c");
        type("echo after-$((2 * 21))", "Enter");
        awaitScreen(s -> s.contains("after-42"), "the shell back after Ctrl-C");

        type("C-]");
        awaitScreen(s -> s.contains("left the console"), "kiln leaving on Ctrl-]");
        awaitScreen(s -> s.contains("kiln exited 0"), "kiln to exit 0");
    }

    @Test
    void aDebianGuestsConsoleIsItsAutologinRootShell() throws Exception {
        Assumptions.assumeTrue(Executables.find("tmux").isPresent(), "tmux not on PATH: install tmux to run this test");
        Assumptions.assumeTrue(Executables.find("qemu-system-x86_64").isPresent(), "qemu-system-x86_64 not on PATH");
        startKiln("shell", "--image", "debian", "--memory", "512", "--timeout", "300");
        awaitScreen(s -> s.contains("Ctrl-] leaves"), "kiln attached to the console");
        // Typing is answered once the shell is there: ask until it is.
        for (int i = 0; !screenShows(s -> s.contains("kiln-42"), Duration.ofSeconds(3)); i++) {
            if (i == 40) awaitScreen(s -> s.contains("kiln-42"), "the guest shell's answer");
            type("echo kiln-$((6 * 7))", "Enter");
        }
        type("id -un; stty size", "Enter");
        String[] pane = tmux(true, "display-message", "-p", "-t", session, "#{pane_height} #{pane_width}").strip().split(" ");
        awaitScreen(s -> s.contains("root") && s.contains(pane[0] + " " + pane[1]), "root, and the tty at the terminal's size");
        // A guest that powers off ends kiln shell without a further key.
        type("systemctl poweroff", "Enter");
        awaitScreen(s -> s.contains("kiln: the guest of") && s.contains(" powered off"), "kiln to see the guest power off");
        awaitScreen(s -> s.contains("kiln exited 0"), "kiln to exit 0");
    }

    /** Starts `kiln ARGS` in a 100x30 tmux session; the pane says "kiln exited N" when it is done, and stays. */
    private void startKiln(String... args) {
        String javaBin = ProcessHandle.current().info().command().orElseThrow();
        List<String> command = new ArrayList<>(List.of(javaBin, "--enable-native-access=ALL-UNNAMED", "-cp",
                System.getProperty("java.class.path"), KilnCommand.class.getName()));
        command.addAll(List.of(args));
        String quoted = String.join(" ", command.stream().map(a -> "'" + a.replace("'", "'\\''") + "'").toList());
        tmux(true, "new-session", "-d", "-s", session, "-x", "100", "-y", "30",
                quoted + "; echo \"kiln exited $?\"; exec sleep 600");
    }

    private void type(String... keys) {
        List<String> args = new ArrayList<>(List.of("send-keys", "-t", session));
        args.addAll(List.of(keys));
        tmux(true, args.toArray(String[]::new));
    }

    /** Reads the screen until {@code done} holds, at most {@link #WAIT}; fails showing the last screen. */
    private void awaitScreen(Predicate<String> done, String what) throws InterruptedException {
        if (!screenShows(done, WAIT)) {
            throw new AssertionError("waited " + WAIT.toSeconds() + " s for " + what + "; the screen:\n" + screen());
        }
    }

    private boolean screenShows(Predicate<String> done, Duration within) throws InterruptedException {
        long end = System.nanoTime() + within.toNanos();
        while (true) {
            if (done.test(screen())) return true;
            if (System.nanoTime() > end) return false;
            Thread.sleep(200); // a terminal has no event to wait on: it is read again
        }
    }

    private String screen() {
        return tmux(false, "capture-pane", "-p", "-J", "-S", "-200", "-t", session);
    }

    /** tmux on a server of the test's own (-L), with no configuration: the user's sessions are not touched. */
    private String tmux(boolean check, String... args) {
        List<String> command = new ArrayList<>(List.of("tmux", "-L", session, "-f", "/dev/null"));
        command.addAll(List.of(args));
        try {
            Process p = new ProcessBuilder(command).redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            int code = p.waitFor();
            if (check && code != 0) throw new AssertionError(command + " exited " + code + ": " + out);
            return out;
        } catch (IOException e) {
            throw new AssertionError(command + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError("interrupted", e);
        }
    }
}
