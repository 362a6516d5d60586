package dev.kiln.os;

/**
 * How a process ended, decoded from a wait status: either it {@code exited} with {@code code}, or it was killed by
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

    /** Decodes a raw status from wait(2); only exits and deaths, since Kiln never asks for stop reports. */
    static ExitStatus decode(int status) {
        int low = status & 0x7f;
        if (low == 0) return exitedWith((status >> 8) & 0xff);
        if (low != 0x7f) return killedBy(low, (status & 0x80) != 0);
        throw new IllegalArgumentException("wait status 0x" + Integer.toHexString(status) + " is a stop, not an exit");
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
                : "killed by " + Libc.signalName(signal) + (coreDumped ? " (core dumped)" : "");
    }
}
