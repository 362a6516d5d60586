package dev.kiln.cli;

import dev.kiln.Console;
import dev.kiln.ExecRequest;
import dev.kiln.KilnException;
import dev.kiln.Machine;
import picocli.CommandLine.Command;
import sun.misc.Signal;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;

/**
 * {@code kiln shell}: the guest's console on this terminal, as {@code virsh console} has it. The terminal goes raw (keys
 * go to the guest as typed, Ctrl-C included), the guest's console tty takes the terminal's size and follows it, and
 * Ctrl-] leaves; the guest is then shut down. A guest that powers off ends it too.
 */
@Command(name = "shell", mixinStandardHelpOptions = true,
        description = "Starts a guest and attaches this terminal to its console (a root shell on the default and "
                + "Debian images). Ctrl-] leaves and shuts the guest down.")
final class ShellCommand implements Callable<Integer> {
    /** Ctrl-]: leaves the console, as in virsh console and telnet. */
    static final int DETACH = 0x1d;
    private static final Duration GUEST_CALL = Duration.ofSeconds(20);

    @picocli.CommandLine.Mixin
    GuestOptions guest = new GuestOptions();

    @Override
    public Integer call() throws IOException {
        PrintStream err = System.err;
        String saved = stty("-g").strip(); // fails at once without a terminal, before a guest is started
        GuestOptions.Started started = guest.start(err);
        try (Machine vm = started.machine()) {
            err.printf("kiln: %s on %s (%s); Ctrl-] leaves%n", vm.id(), guest.describe(), started.how());
            Console console = vm.console();
            Runnable resize = () -> followSize(vm, err);
            resize.run();
            Signal.handle(new Signal("WINCH"), s -> Thread.ofVirtual().start(resize));
            stty("raw", "-echo");
            boolean left;
            try {
                console.teeTo(Path.of("/dev/stdout"));
                console.send("\n"); // a fresh prompt: the last one was printed before this terminal came
                left = relayKeysWhileRunning(vm, System.in, console);
            } finally {
                stty(saved);
            }
            err.println();
            if (!left) {
                err.println("kiln: the guest of " + vm.id() + " powered off");
                return 0;
            }
            err.println("kiln: left the console of " + vm.id() + "; shutting it down");
            vm.shutdown(Duration.ofSeconds(10));
        }
        return 0;
    }

    /**
     * Relays the keys until Ctrl-] or the end of input (true), or until the VMM exits, the guest having powered off
     * (false). The keys are read on a daemon thread of their own: a read of the terminal cannot be called off, and
     * that thread ends with the JVM.
     */
    private static boolean relayKeysWhileRunning(Machine vm, InputStream keys, Console console) throws IOException {
        CompletableFuture<Boolean> done = new CompletableFuture<>();
        Thread.ofPlatform().daemon().name("kiln-shell-keys").start(() -> {
            try {
                relayKeys(keys, console);
                done.complete(true);
            } catch (IOException | RuntimeException e) {
                done.completeExceptionally(e);
            }
        });
        Thread.ofVirtual().name("kiln-shell-exit").start(() -> {
            try {
                vm.awaitExit(Duration.ofDays(365)); // no limit of its own: the keys end the wait as well
            } catch (RuntimeException e) {
                // closed or failed: either way the console is gone
            }
            done.complete(false);
        });
        try {
            return done.join();
        } catch (CompletionException e) {
            if (e.getCause() instanceof IOException io) throw io;
            throw e.getCause() instanceof RuntimeException r ? r : e;
        }
    }

    /** Sends what is typed to the console until Ctrl-] (or the end of input). */
    private static void relayKeys(InputStream keys, Console console) throws IOException {
        byte[] buf = new byte[4096];
        for (int n; (n = keys.read(buf)) >= 0; ) {
            int detach = -1;
            for (int i = 0; i < n && detach < 0; i++) if (buf[i] == DETACH) detach = i;
            int keep = detach < 0 ? n : detach;
            if (keep > 0) console.send(Arrays.copyOf(buf, keep));
            if (detach >= 0) return;
        }
    }

    /** Gives the guest's console tty this terminal's size (a shell there redraws for it on SIGWINCH). */
    private static void followSize(Machine vm, PrintStream err) {
        try {
            String[] size = stty("size").strip().split("\\s+");
            vm.guest().exec(ExecRequest.of("stty", "-F", "/dev/console", "rows", size[0], "cols", size[1])
                    .timeout(GUEST_CALL).build()).orThrow();
        } catch (RuntimeException | IOException e) {
            err.print("kiln: cannot give the guest's console this terminal's size: " + e.getMessage() + "\r\n");
        }
    }

    /** Runs stty on the controlling terminal; returns its output. */
    private static String stty(String... args) throws IOException {
        List<String> command = new java.util.ArrayList<>(List.of("stty"));
        command.addAll(List.of(args));
        Process p = new ProcessBuilder(command).redirectInput(new File("/dev/tty")).redirectErrorStream(true).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        try {
            if (p.waitFor() != 0) throw new KilnException("kiln shell needs a terminal (stty " + String.join(" ", args) + ": " + out.strip() + ")");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while setting up the terminal", e);
        }
        return out;
    }
}
