package dev.kiln;

import dev.kiln.os.Posix;

/**
 * How a process (a VMM, say) ended, decoded from a wait status: either it {@code exited} with {@code code}, or it was killed by
 * {@code signal} (and perhaps dumped core).
 */
public record ExitStatus(boolean exited, int code, int signal, boolean coreDumped) {
    public ExitStatus {
        if (exited ? code < 0 || code > 255 || signal != 0 || coreDumped : signal <= 0 || code != 0)
            throw new IllegalArgumentException("inconsistent exit status: exited=" + exited + " code=" + code
                    + " signal=" + signal + " coreDumped=" + coreDumped);
    }

    public static ExitStatus exitedWith(int code) {
        return new ExitStatus(true, code, 0, false);
    }

    public static ExitStatus killedBy(int signal, boolean coreDumped) {
        return new ExitStatus(false, 0, signal, coreDumped);
    }

    /** The code a shell would report in {@code $?}: the exit code, or 128 plus the signal number. */
    public int shellCode() {
        return exited ? code : 128 + signal;
    }

    public boolean success() {
        return exited && code == 0;
    }

    @Override
    public String toString() {
        return exited ? "exited with code " + code
                : "killed by " + Posix.signalName(signal) + (coreDumped ? " (core dumped)" : "");
    }
}
