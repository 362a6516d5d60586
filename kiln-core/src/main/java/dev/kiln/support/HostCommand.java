package dev.kiln.support;

import dev.kiln.KilnException;
import dev.kiln.Text;

import java.io.BufferedReader;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;

/** Runs a host tool to its end (qemu-img, apt-get, mke2fs…), in the C locale, with a time limit. */
public final class HostCommand {
    private HostCommand() {}

    /** What a finished command printed, and how it ended. */
    public record Result(List<String> command, int exitCode, String stdout, String stderr) {
        public boolean ok() {
            return exitCode == 0;
        }

        /** stderr, else stdout: where tools say what went wrong. */
        public String complaint() {
            return (stderr.isBlank() ? stdout : stderr).strip();
        }
    }

    /**
     * Runs {@code command} in {@code dir} (null: the current directory) with stdin from /dev/null; kills it and throws
     * if it has not ended within {@code timeout}. {@code what} names it in messages ("qemu-img info of disk.qcow2").
     */
    public static Result run(List<String> command, Path dir, Duration timeout, String what) {
        return run(command, dir, timeout, what, null);
    }

    /**
     * {@link #run(List, Path, Duration, String)} that also hands each line the command prints, on stdout or stderr,
     * to {@code lines} as it comes (progress of a long build); null for none.
     */
    public static Result run(List<String> command, Path dir, Duration timeout, String what, Consumer<String> lines) {
        ProcessBuilder pb = new ProcessBuilder(command).redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        if (dir != null) pb.directory(dir.toFile());
        pb.environment().putAll(Map.of("LC_ALL", "C", "LANG", "C"));
        Process p;
        try {
            p = pb.start();
        } catch (IOException e) {
            throw new KilnException("cannot run " + what + " (" + String.join(" ", command) + "): " + e.getMessage(), e);
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(), err = new ByteArrayOutputStream();
        Thread outReader = drain(p.getInputStream(), out, lines), errReader = drain(p.getErrorStream(), err, lines);
        try {
            if (!p.waitFor(timeout.toMillis(), TimeUnit.MILLISECONDS)) {
                killTree(p);
                p.waitFor(10, TimeUnit.SECONDS);
                throw new KilnException(what + " did not finish within " + Text.human(timeout) + "; it printed:\n"
                        + Text.tail(out.toString(StandardCharsets.UTF_8) + err.toString(StandardCharsets.UTF_8), 4000));
            }
            outReader.join();
            errReader.join();
        } catch (InterruptedException e) {
            killTree(p);
            Thread.currentThread().interrupt();
            throw new KilnException("interrupted while running " + what, e);
        }
        return new Result(List.copyOf(command), p.exitValue(), out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
    }

    /** The command and what it started (mmdebstrap's apt and dpkg, say): killing only the command would orphan them. */
    private static void killTree(Process p) {
        p.descendants().forEach(ProcessHandle::destroyForcibly);
        p.destroyForcibly();
    }

    private static Thread drain(InputStream in, ByteArrayOutputStream to, Consumer<String> lines) {
        return Thread.ofVirtual().name("kiln-host-command-output").start(() -> {
            try (in) {
                if (lines == null) {
                    in.transferTo(to);
                    return;
                }
                BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
                for (String line; (line = r.readLine()) != null; ) {
                    to.writeBytes((line + "\n").getBytes(StandardCharsets.UTF_8));
                    lines.accept(line);
                }
            } catch (IOException ignored) {
                // the process died; its exit code tells
            }
        });
    }
}
