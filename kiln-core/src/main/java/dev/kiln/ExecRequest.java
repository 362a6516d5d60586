package dev.kiln;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.function.Consumer;

/**
 * A command to run in the guest: argv (no shell interpolation), optional stdin, environment, working
 * directory and timeout. On timeout the guest process is killed and {@link WaitTimeoutException} thrown.
 *
 * <p>{@code onStdout}/{@code onStderr}, when set, receive that stream while the command runs, chunk by chunk in
 * order, on a thread of Kiln's (a slow callback holds the command back rather than queueing its output); the
 * stream is then not kept in the {@link ExecResult}.
 */
public record ExecRequest(List<String> argv, byte[] stdin, Map<String, String> env, String workingDir,
                          Duration timeout, Consumer<byte[]> onStdout, Consumer<byte[]> onStderr) {
    public static final Duration DEFAULT_TIMEOUT = Duration.ofMinutes(2);

    public ExecRequest {
        argv = List.copyOf(argv);
        if (argv.isEmpty()) throw new IllegalArgumentException("argv must name a command");
        env = env == null ? Map.of() : Map.copyOf(env);
        timeout = timeout == null ? DEFAULT_TIMEOUT : timeout;
        if (timeout.isNegative() || timeout.isZero()) throw new IllegalArgumentException("timeout must be positive");
    }

    /** Whether the output is to be delivered while the command runs. */
    public boolean streams() {
        return onStdout != null || onStderr != null;
    }

    public static Builder of(String... argv) {
        return new Builder(List.of(argv));
    }

    public static Builder of(List<String> argv) {
        return new Builder(argv);
    }

    public static final class Builder {
        private final List<String> argv;
        private byte[] stdin;
        private final Map<String, String> env = new LinkedHashMap<>();
        private String workingDir;
        private Duration timeout = DEFAULT_TIMEOUT;
        private Consumer<byte[]> onStdout, onStderr;

        private Builder(List<String> argv) {
            this.argv = new ArrayList<>(argv);
        }

        public Builder stdin(byte[] bytes) { this.stdin = bytes; return this; }

        public Builder stdin(String text) { return stdin(text.getBytes(StandardCharsets.UTF_8)); }

        public Builder env(String name, String value) { env.put(Objects.requireNonNull(name), Objects.requireNonNull(value)); return this; }

        public Builder env(Map<String, String> vars) { env.putAll(vars); return this; }

        public Builder workingDir(String dir) { this.workingDir = dir; return this; }

        public Builder timeout(Duration timeout) { this.timeout = timeout; return this; }

        /** Receives stdout as the command writes it (not kept in the result then). */
        public Builder onStdout(Consumer<byte[]> callback) { this.onStdout = callback; return this; }

        /** Receives stderr as the command writes it (not kept in the result then). */
        public Builder onStderr(Consumer<byte[]> callback) { this.onStderr = callback; return this; }

        public ExecRequest build() { return new ExecRequest(argv, stdin, env, workingDir, timeout, onStdout, onStderr); }
    }
}
