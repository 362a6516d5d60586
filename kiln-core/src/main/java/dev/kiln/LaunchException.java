package dev.kiln;

import java.util.List;

/**
 * A VMM could not be started, or died before it was ready. Carries everything needed to reproduce it:
 * the full command line, the exit code (null when it was still running) and the VMM's own output.
 */
public class LaunchException extends KilnException {
    private final List<String> commandLine;
    private final Integer exitCode;
    private final String vmmOutput;

    public LaunchException(String message, List<String> commandLine, Integer exitCode, String vmmOutput,
                           Throwable cause) {
        super(describe(message, commandLine, exitCode, vmmOutput), cause);
        this.commandLine = commandLine == null ? List.of() : List.copyOf(commandLine);
        this.exitCode = exitCode;
        this.vmmOutput = vmmOutput == null ? "" : vmmOutput;
    }

    private static String describe(String message, List<String> cmd, Integer exitCode, String out) {
        StringBuilder b = new StringBuilder(message);
        if (exitCode != null) b.append("\n  exit code: ").append(exitCode);
        if (cmd != null && !cmd.isEmpty()) b.append("\n  command: ").append(String.join(" ", cmd));
        if (out != null && !out.isBlank()) {
            b.append("\n  VMM output:\n    ").append(Text.tail(out, 4000).strip().replace("\n", "\n    "));
        }
        return b.toString();
    }

    public List<String> commandLine() { return commandLine; }

    /** The VMM's exit code, or null when it had not exited. */
    public Integer exitCode() { return exitCode; }

    public String vmmOutput() { return vmmOutput; }
}
