package dev.kiln;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;

/**
 * What a command run in the guest did.
 *
 * @param argv     the command that ran
 * @param exitCode its exit code; for a command killed by a signal, 128 + the signal number
 * @param signal   the signal that killed it, or 0
 * @param stdout   its standard output, byte for byte
 * @param stderr   its standard error, byte for byte
 * @param duration wall time from the request to the result, as the host saw it
 */
public record ExecResult(List<String> argv, int exitCode, int signal, byte[] stdout, byte[] stderr, Duration duration) {
    public String stdoutText() { return new String(stdout, StandardCharsets.UTF_8); }

    public String stderrText() { return new String(stderr, StandardCharsets.UTF_8); }

    public boolean succeeded() { return exitCode == 0; }

    /**
     * Throws a {@link CommandFailedException} naming the command, its exit code, stdout and stderr unless it exited 0.
     */
    public ExecResult orThrow() {
        if (!succeeded()) throw new CommandFailedException("command " + argv + " exited " + exitCode
                + (signal != 0 ? " (signal " + signal + ")" : "") + output(), this);
        return this;
    }

    /** The command's stdout and stderr (their tails) for messages, or "" when it printed nothing. */
    String output() {
        String out = Text.tail(stdoutText(), 2000).strip(), err = Text.tail(stderrText(), 2000).strip();
        return (out.isEmpty() ? "" : "\n  stdout:\n    " + out.replace("\n", "\n    "))
                + (err.isEmpty() ? "" : "\n  stderr:\n    " + err.replace("\n", "\n    "));
    }

    @Override
    public String toString() {
        return "ExecResult" + argv + " exit=" + exitCode + " stdout=" + stdout.length + "B stderr=" + stderr.length
                + "B in " + Text.human(duration);
    }
}
