package dev.kiln.agent;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.kiln.ExecRequest;
import dev.kiln.ExecResult;
import dev.kiln.GuestException;
import dev.kiln.KilnException;
import dev.kiln.Text;
import dev.kiln.WaitTimeoutException;
import dev.kiln.agent.QgaSession.AgentError;
import dev.kiln.support.Deadline;
import dev.kiln.support.JsonFramer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Runs commands through the agent: {@code guest-exec}, then {@code guest-exec-status} until the command
 * exits, and, when it outlives its timeout, a kill of it and everything it started.
 *
 * <p>The request's environment is added to the agent's own (the agent's {@code env} argument replaces the
 * whole environment; the agent's is read once per connection from {@code /proc/self/environ} of a child).
 */
final class QgaExec {
    private static final Logger log = LoggerFactory.getLogger(QgaExec.class);

    private static final Duration KILL_BUDGET = Duration.ofSeconds(5);
    private static final Duration REAP_WAIT = Duration.ofSeconds(2);
    private static final Duration STATUS_FLOOR = Duration.ofSeconds(2);
    // Each guest-exec-status poll costs guest CPU (the agent runs on the guest's vCPUs), so polling too
    // eagerly slows the very command being waited for. Tunable: kiln.qga.firstPollMicros, kiln.qga.maxPollMicros.
    private static final long FIRST_BACKOFF_NANOS = Long.getLong("kiln.qga.firstPollMicros", 200) * 1000;
    private static final long MAX_BACKOFF_NANOS = Long.getLong("kiln.qga.maxPollMicros", 10_000) * 1000;
    private static final String FALLBACK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    /** Runs argv in a directory without interpolating anything: both travel as positional parameters. */
    private static final String CD_AND_EXEC = "cd \"$1\" || exit 126; shift; exec \"$@\"";
    /**
     * Prints $1 (a pid; +PID: that pid's children; anything else: none) and its descendants, each stopped first so it
     * cannot fork more, then SIGKILLs them all; the further arguments name virtio-serial ports whose holders (the
     * process itself when its pid is not known, an orphan still writing to a stream) die with their trees.
     * POSIX sh over /proc (busybox ash and dash alike); no pkill or ps needed.
     */
    private static final String KILL_TREE = """
            tree() {
              kill -STOP "$1" 2>/dev/null
              for f in /proc/[0-9]*/status; do
                p=${f#/proc/}; p=${p%/status}
                while read -r k v; do
                  if [ "$k" = PPid: ]; then [ "$v" = "$1" ] && tree "$p"; break; fi
                done < "$f"
              done 2>/dev/null
              echo "$1"
            }
            pids=
            case $1 in
              +*) # the children of a pid, each with its tree
                for f in /proc/[0-9]*/status; do
                  p=${f#/proc/}; p=${p%/status}
                  while read -r k v; do
                    if [ "$k" = PPid: ]; then [ "$v" = "${1#+}" ] && pids="$pids $(tree "$p")"; break; fi
                  done < "$f"
                done 2>/dev/null ;;
              *) [ "$1" -gt 0 ] 2>/dev/null && pids=$(tree "$1") ;;
            esac
            shift
            for n; do
              for f in /sys/class/virtio-ports/*/name; do
                read -r v < "$f" && [ "$v" = "$n" ] || continue
                d=${f%/name}; d=/dev/${d##*/}
                for h in /proc/[0-9]*/fd/*; do
                  [ "$h" -ef "$d" ] 2>/dev/null || continue
                  h=${h#/proc/}; pids="$pids $(tree "${h%%/*}")"
                done
              done
            done
            kill -9 $pids 2>/dev/null
            """;

    private final QgaSession session;
    private final String name;
    private volatile AgentEnvironment agentEnvironment;

    /** The agent's environment as read on one connection. */
    private record AgentEnvironment(long connection, Map<String, String> variables) {}

    QgaExec(QgaSession session) {
        this.session = session;
        this.name = session.name();
    }

    ExecResult exec(ExecRequest req) {
        long start = System.nanoTime();
        Deadline deadline = Deadline.after(req.timeout());
        long pid = start(req, deadline);
        JsonNode status = awaitExit(pid, deadline, " of " + req.argv());
        if (status == null) throw killAfterTimeout(pid, req);
        return result(req, status, Duration.ofNanos(System.nanoTime() - start));
    }

    /** Starts the request with its output captured by the agent; returns the pid to poll. */
    long start(ExecRequest req, Deadline deadline) {
        return start(req, true, deadline);
    }

    /** Starts the request, its output captured by the agent or not (then it goes where the command sends it). */
    long start(ExecRequest req, boolean captureOutput, Deadline deadline) {
        String what = " of " + req.argv();
        ObjectNode args = JsonFramer.JSON.createObjectNode();
        List<String> argv = req.argv();
        if (req.workingDir() != null) {
            List<String> wrapped = new ArrayList<>(List.of("-c", CD_AND_EXEC, "sh", req.workingDir()));
            wrapped.addAll(argv);
            args.put("path", "/bin/sh");
            strings(args.putArray("arg"), wrapped);
        } else {
            args.put("path", argv.getFirst());
            strings(args.putArray("arg"), argv.subList(1, argv.size()));
        }
        if (!req.env().isEmpty()) {
            Map<String, String> env = new LinkedHashMap<>(agentEnvironment(deadline));
            env.putAll(req.env());
            ArrayNode array = args.putArray("env");
            env.forEach((k, v) -> array.add(k + "=" + v));
        }
        if (req.stdin() != null) args.put("input-data", Base64.getEncoder().encodeToString(req.stdin()));
        args.put("capture-output", captureOutput);
        return spawn(args, deadline, what, req.argv());
    }

    /** What an exited process's final guest-exec-status says. */
    ExecResult result(ExecRequest req, JsonNode status, Duration took) {
        if (status.path("out-truncated").asBoolean() || status.path("err-truncated").asBoolean()) {
            throw new GuestException("the guest agent of " + name + " truncated the "
                    + (status.path("out-truncated").asBoolean() ? "stdout" : "stderr") + " of " + req.argv()
                    + " (qemu-ga keeps at most 16 MiB per stream): write large output to a file and copyOut it");
        }
        int signal = status.path("signal").asInt(0);
        int exitCode = status.has("signal") ? 128 + signal : status.path("exitcode").asInt(-1);
        return new ExecResult(req.argv(), exitCode, signal, bytes(status, "out-data"), bytes(status, "err-data"), took);
    }

    private long spawn(ObjectNode args, Deadline deadline, String what, List<String> argv) {
        try {
            JsonNode ret = session.request("guest-exec", args, deadline, what);
            if (!ret.path("pid").canConvertToLong()) {
                throw new GuestException("guest agent of " + name + " answered guest-exec" + what + " without a pid: " + ret);
            }
            return ret.path("pid").asLong();
        } catch (AgentError e) {
            throw new GuestException("cannot run " + argv + " in " + name + ": " + e.desc + " (" + e.errorClass() + ")",
                    e.errorClass(), e);
        }
    }

    /** Polls guest-exec-status at once, then with a short doubling backoff; null when the deadline passed. */
    JsonNode awaitExit(long pid, Deadline deadline, String what) {
        return awaitExit(pid, deadline, what, MAX_BACKOFF_NANOS);
    }

    JsonNode awaitExit(long pid, Deadline deadline, String what, long maxBackoffNanos) {
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("pid", pid);
        long backoff = FIRST_BACKOFF_NANOS;
        while (true) {
            // A status poll is answered at once by a live agent; give it a floor so that a poll made just
            // before the deadline does not pass for silence.
            Deadline pollBy = deadline.remainingNanos() < STATUS_FLOOR.toNanos() ? Deadline.after(STATUS_FLOOR) : deadline;
            JsonNode status = session.request("guest-exec-status", args, pollBy, what);
            if (status.path("exited").asBoolean()) return status;
            long left = deadline.remainingNanos();
            if (left == 0) return null;
            session.pause(Math.min(backoff, left));
            backoff = Math.min(backoff * 2, maxBackoffNanos);
        }
    }

    /** Kills pid and its descendants, and whatever holds the ports named; waits (within the deadline) for the killer. */
    void killTree(long pid, List<String> portNames, Deadline deadline) {
        killTree(Long.toString(pid), portNames, deadline);
    }

    /** {@link #killTree(long, List, Deadline)} with KILL_TREE's first argument: a pid, +PID for its children, or "-". */
    void killTree(String target, List<String> portNames, Deadline deadline) {
        List<String> args = new ArrayList<>(List.of("-c", KILL_TREE, "sh", target));
        args.addAll(portNames);
        runQuietly(args, deadline, " to kill " + target + (portNames.isEmpty() ? "" : " and the holders of " + portNames));
    }

    /** Sends signal to pid alone. */
    void signal(long pid, int signal, Deadline deadline) {
        if (signal < 1 || signal > 64) throw new IllegalArgumentException("signal must be 1..64: " + signal);
        runQuietly(List.of("-c", "kill -" + signal + " \"$1\" 2>/dev/null", "sh", Long.toString(pid)), deadline,
                " to send signal " + signal + " to pid " + pid);
    }

    /** Whether nothing in the guest holds the virtio-serial port named {@code name} open (a port has one holder). */
    boolean portFree(String name, Deadline deadline) {
        return runQuietly(List.of("-c", PORT_FREE, "sh", name), deadline, " to see whether port " + name + " is free") == 0;
    }

    private static final String PORT_FREE = """
            for f in /sys/class/virtio-ports/*/name; do
              read -r v < "$f" && [ "$v" = "$1" ] || continue
              d=${f%/name}; true > "/dev/${d##*/}" 2>/dev/null; exit
            done
            exit 2
            """;

    private int runQuietly(List<String> shArgs, Deadline deadline, String what) {
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", "/bin/sh");
        strings(args.putArray("arg"), shArgs);
        args.put("capture-output", true);
        long pid = session.request("guest-exec", args, deadline, what).path("pid").asLong();
        JsonNode status = awaitExit(pid, deadline, what);
        if (status == null) throw new WaitTimeoutException("the guest's shell" + what, deadline.total(), session.consoleTail());
        return status.path("exitcode").asInt(-1);
    }

    /**
     * There is no QGA kill: a shell in the guest stops the process and its descendants (found through
     * /proc, as {@code sh -c} commands fork), kills them all, and the victim is reaped for its last output.
     */
    private WaitTimeoutException killAfterTimeout(long pid, ExecRequest req) {
        Deadline budget = Deadline.after(KILL_BUDGET);
        String what = " to kill pid " + pid + " (" + req.argv() + ")";
        JsonNode last = null;
        KilnException problem = null;
        try {
            killTree(pid, List.of(), budget);
            Duration left = budget.remaining();
            last = awaitExit(pid, Deadline.after(left.compareTo(REAP_WAIT) < 0 ? left : REAP_WAIT),
                    " of " + req.argv() + " after kill -9");
        } catch (KilnException e) {
            problem = e;
        }
        StringBuilder seen = new StringBuilder();
        if (last != null) {
            seen.append(outputTail("stdout", bytes(last, "out-data"))).append(outputTail("stderr", bytes(last, "err-data")));
        }
        String console = session.consoleTail();
        if (console != null && !console.isBlank()) seen.append("console:\n").append(console);
        WaitTimeoutException e = new WaitTimeoutException("command " + req.argv() + " (pid " + pid
                + " in " + name + ") to finish; " + (last != null ? "killed it"
                        : "killed it, but something it started still holds its output open"), req.timeout(), seen.toString());
        if (problem != null) e.addSuppressed(problem);
        return e;
    }

    private static String outputTail(String stream, byte[] bytes) {
        if (bytes.length == 0) return "";
        return stream + ":\n" + Text.tail(new String(bytes, StandardCharsets.UTF_8), 1000).strip() + "\n";
    }

    /** The agent's own environment, which a request's env is added to; read once per connection. */
    private Map<String, String> agentEnvironment(Deadline deadline) {
        long connection = session.connection();
        AgentEnvironment known = agentEnvironment;
        if (known != null && known.connection() == connection) return known.variables();
        Map<String, String> env = new LinkedHashMap<>();
        ObjectNode args = JsonFramer.JSON.createObjectNode().put("path", "cat");
        strings(args.putArray("arg"), List.of("/proc/self/environ"));
        args.put("capture-output", true);
        String what = " to read the agent's environment";
        JsonNode status;
        try {
            status = awaitExit(session.request("guest-exec", args, deadline, what).path("pid").asLong(), deadline, what);
        } catch (AgentError e) {
            status = null;
        }
        if (status == null && deadline.expired()) {
            throw new WaitTimeoutException("guest agent of " + name + " to report its environment", deadline.total(),
                    session.consoleTail());
        }
        if (status != null && status.path("exitcode").asInt(-1) == 0) {
            for (String entry : new String(bytes(status, "out-data"), StandardCharsets.UTF_8).split("\0")) {
                int eq = entry.indexOf('=');
                if (eq > 0) env.put(entry.substring(0, eq), entry.substring(eq + 1));
            }
        } else {
            log.debug("could not read the environment of the guest agent of {}; using a default PATH", name);
        }
        env.putIfAbsent("PATH", FALLBACK_PATH);
        Map<String, String> variables = Map.copyOf(env);
        agentEnvironment = new AgentEnvironment(connection, variables);
        return variables;
    }

    private static byte[] bytes(JsonNode status, String field) {
        JsonNode data = status.get(field);
        return data == null || data.isNull() ? new byte[0] : Base64.getDecoder().decode(data.asText());
    }

    private static void strings(ArrayNode array, List<String> values) {
        values.forEach(array::add);
    }
}
