package dev.kiln.ssh;

import dev.kiln.ExecRequest;

import java.util.List;
import java.util.Map;

import static dev.kiln.support.ShellWords.quote;

/**
 * Command lines for the guest's login shell: sshd hands an exec request's string to {@code $SHELL -c}, so argv has no
 * shell of its own only when every word is quoted.
 */
final class ShellCommand {
    private ShellCommand() {}

    /**
     * Run by {@code sh -c} with argv as its arguments: says "n" when the command does not exist, else its pid (the first
     * stdout line, read before the command's own output), then becomes the command, so that pid is the command's.
     */
    static final String WRAPPER = "command -v \"$1\" >/dev/null 2>&1 || { echo n; exit 127; }; echo $$; exec \"$@\"";

    /** What the wrapper says on its first line when the command does not exist. */
    static final String NOT_FOUND = "n";

    /**
     * Stops, then kills, the processes given as arguments and everything they started: sshd makes each command a
     * session leader, so its session finds what it started even once orphaned; descendants that left the session are
     * found by their parent. Stopped first, scan after scan, so that nothing forks away. Needs only sh, kill and /proc.
     */
    static final String KILL_TREE = """
            [ $# -gt 0 ] || exit 0
            t=" $* " all=' '
            while :; do
              new=
              for f in /proc/[0-9]*/stat; do
                p=${f#/proc/}; p=${p%/stat}
                case $all in *" $p "*) continue; esac
                read -r l < "$f" 2>/dev/null || continue
                set -- ${l##*\\) }
                case $t in
                  *" $p "*|*" $4 "*) new="$new $p" ;;
                  *) case $all in *" $2 "*) new="$new $p"; esac ;;
                esac
              done
              [ -n "$new" ] || break
              kill -STOP $new 2>/dev/null
              all="$all${new# } "
            done
            kill -KILL $all 2>/dev/null
            exit 0
            """;

    /** {@code sh -c script name args…}, quoted for the login shell. */
    static String script(String script, List<String> args) {
        StringBuilder line = new StringBuilder("sh -c ").append(quote(script)).append(" kiln");
        for (String a : args) line.append(' ').append(quote(a));
        return line.toString();
    }

    /** The request's argv under {@link #WRAPPER}, in its working directory, with its environment added. */
    static String of(ExecRequest req) {
        StringBuilder line = new StringBuilder();
        if (req.workingDir() != null) line.append("cd ").append(quote(req.workingDir())).append(" && ");
        line.append("exec ");
        if (!req.env().isEmpty()) {
            line.append("env ");
            for (Map.Entry<String, String> e : req.env().entrySet()) {
                String name = e.getKey();
                if (name.isEmpty() || name.contains("=") || name.startsWith("-")) {
                    throw new IllegalArgumentException("not an environment variable name: '" + name + "'");
                }
                line.append(quote(name + "=" + e.getValue())).append(' ');
            }
        }
        return line.append(script(WRAPPER, req.argv())).toString();
    }

    /** The number of the signal sshd names (RFC 4254 gives names without SIG), as Linux numbers them; 0 if unknown. */
    static int signalNumber(String name) {
        int i = SIGNALS.indexOf(name.startsWith("SIG") ? name.substring(3) : name);
        return i < 0 ? 0 : i + 1;
    }

    private static final List<String> SIGNALS = List.of("HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "BUS", "FPE", "KILL",
            "USR1", "SEGV", "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU", "URG",
            "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR", "SYS");
}
