package dev.kiln.firecracker;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The small bash script Kiln spawns in place of a jailer that forks ({@code --daemonize} or
 * {@code --new-pid-ns}): the jailer then exits at once while Firecracker runs on outside Kiln's child. The
 * keeper runs the jailer, reads Firecracker's pid from the jail's pid file, and stays alive exactly as long
 * as Firecracker does, so that Kiln's process handle means "Firecracker runs". Since a daemonized
 * Firecracker leaves Kiln's process group, a watcher in a session of its own holds a second lifeline and
 * kills Firecracker, by pid and only if it is still the same process, when the JVM dies.
 */
final class Keeper {
    // $1 = pid file, the rest = the jailer's argv. fd 4 = the console socket (when attached), the last extra fd =
    // Firecracker's lifeline. start time (field 22 of /proc/PID/stat) guards against a reused pid.
    private static final String SCRIPT = """
            pidfile=$1; shift
            %1$s
            "$@" %2$d<&- || exit $?
            fc=
            for _ in $(seq 200); do read -r fc < "$pidfile" 2>/dev/null; [ -n "$fc" ] && break; sleep 0.05; done
            [ -n "$fc" ] || { echo "kiln: the jailer exited without writing $pidfile" >&2; exit 1; }
            started() { local s; read -r s < "/proc/$1/stat" 2>/dev/null || return 1; s=${s##*) }; set -- $s; echo "${20}"; }
            t0=$(started "$fc")
            setsid bash -c 'exec </dev/null >/dev/null 2>&1; read -r _ <&%2$d
              read -r s < "/proc/$1/stat" 2>/dev/null || exit 0; s=${s##*) }; set -- "$1" "$2" $s
              [ "${22}" = "$2" ] && kill -KILL "$1"' kiln-firecracker-lifeline "$fc" "$t0" &
            watcher=$!
            exec %2$d<&-
            while kill -0 "$fc" 2>/dev/null; do sleep 0.1; done
            kill "$watcher" 2>/dev/null
            exit 0
            """;

    private Keeper() {}

    static List<String> command(Path pidFile, boolean consoleAttached, List<String> jailerArgv) {
        int lifelineFd = consoleAttached ? 5 : 4;
        String stdio = consoleAttached ? "exec <&4 >&4 4>&-" : "exec </dev/null";
        List<String> argv = new ArrayList<>(List.of("/bin/bash", "-c", SCRIPT.formatted(stdio, lifelineFd),
                "kiln-firecracker-keeper", pidFile.toString()));
        argv.addAll(jailerArgv);
        return argv;
    }
}
