package dev.kiln.firecracker.api.model;

/** {@code Logger}: where Firecracker's human-readable log goes (a file or FIFO) and how much of it. */
public record LoggerConfig(Level level, String logPath, Boolean showLevel, Boolean showLogOrigin, String module) {
    /** Firecracker's log levels (it reads them case-insensitively). */
    public enum Level { Error, Warning, Info, Debug, Trace, Off }

    public static LoggerConfig of(String logPath, Level level) {
        return new LoggerConfig(level, logPath, null, null, null);
    }
}
